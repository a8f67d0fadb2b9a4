"""Composite requests for the Salesforce connector: a write, its invitees and the read back in one call of the
24-hour allocation, all or none (a failed subrequest rolls back every write), each failure mapped by
salesforce_errors.translate_error as if it had been sent alone. I/O side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote_plus

import httpx

from sync_core.adapters.crm.salesforce_errors import translate_error
from sync_core.adapters.crm.salesforce_wire import SIDE
from sync_core.errors import UnprocessableError

# "Up to 25 subrequests in a single call. Up to 5 of these subrequests can be sObject Collections or query
# operations" (Send Multiple Requests Using Composite, REST API Developer Guide).
MAX_SUBREQUESTS = 25
MAX_QUERIES_AND_COLLECTIONS = 5
HALTED = "PROCESSING_HALTED"  # the answer of a subrequest rolled back because another one failed


class Connection(Protocol):
    """What a composite call needs of the connector: its data path, its one way to send, its JSON reading."""

    data_path: str

    async def _send(
        self, method: str, path: str, *, item_id: str | None, json_body: Any = None
    ) -> httpx.Response: ...

    def _json(self, response: httpx.Response, item_id: str | None) -> Any: ...


@dataclass(frozen=True)
class Sub:
    """One subrequest: `url` relative to the data path (`sobjects/Event/`), `ref` its referenceId (letters,
    digits, underscores), `body` and `headers` as the request alone would carry them."""

    method: str
    url: str
    ref: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def heavy(self) -> bool:
        """A query or an sObject Collections request: at most 5 in one composite call."""
        return self.url.startswith(("query", "queryAll", "composite/sobjects"))


def fits(subs: Sequence[Sub]) -> bool:
    return len(subs) <= MAX_SUBREQUESTS and sum(s.heavy for s in subs) <= MAX_QUERIES_AND_COLLECTIONS


def query(soql: str, *, ref: str, deleted: bool = False) -> Sub:
    """A SOQL subrequest; `@{ref.field}` references in it stay as they are, for Salesforce to resolve."""
    parts = soql.split("@{")
    text = quote_plus(parts[0], safe="'=,()<>.")
    for part in parts[1:]:
        reference, _, rest = part.partition("}")
        text += "@{" + reference + "}" + quote_plus(rest, safe="'=,()<>.")
    return Sub("GET", f"{'queryAll' if deleted else 'query'}/?q={text}", ref)


async def send(connector: Connection, subs: Sequence[Sub], *, item_id: str | None) -> dict[str, Any]:
    """One `/composite` call with `allOrNone`; the subrequests' bodies by referenceId. A failed subrequest
    raises what it would have raised sent alone (an invitee refused: UnprocessableError, as a Collections
    request's failed record), and nothing it carried was written."""
    if not subs or not fits(subs):
        raise ValueError(f"not a composite request: {len(subs)} subrequests")
    requests = []
    for sub in subs:
        entry: dict[str, Any] = {
            "method": sub.method,
            "url": f"{connector.data_path}/{sub.url}",
            "referenceId": sub.ref,
        }
        if sub.body is not None:
            entry["body"] = sub.body
        if sub.headers:
            entry["httpHeaders"] = dict(sub.headers)
        requests.append(entry)
    response = await connector._send(
        "POST", "composite", item_id=item_id, json_body={"allOrNone": True, "compositeRequest": requests}
    )
    data = connector._json(response, item_id)
    answers = data.get("compositeResponse") if isinstance(data, dict) else None
    if not isinstance(answers, list) or len(answers) != len(subs):
        raise UnprocessableError("Salesforce composite answer has no `compositeResponse` list", side=SIDE)
    by_ref = {str(a.get("referenceId")): a for a in answers if isinstance(a, dict)}
    failed = [sub for sub in subs if _failed(by_ref.get(sub.ref))]
    real = [sub for sub in failed if not _halted(by_ref[sub.ref])] or failed
    if real:
        sub = real[0]
        raise _error(sub, by_ref[sub.ref], connector.data_path, item_id)
    return {sub.ref: by_ref[sub.ref].get("body") for sub in subs}


def _failed(answer: Any) -> bool:
    if not isinstance(answer, dict):
        return True
    status = answer.get("httpStatusCode")
    if not isinstance(status, int) or status >= 300:
        return True
    body = answer.get("body")
    return isinstance(body, list) and any(isinstance(r, dict) and r.get("success") is False for r in body)


def _halted(answer: Mapping[str, Any]) -> bool:
    body = answer.get("body")
    return (
        isinstance(body, list)
        and bool(body)
        and all(isinstance(e, dict) and e.get("errorCode") == HALTED for e in body)
    )


def _error(sub: Sub, answer: Any, data_path: str, item_id: str | None) -> Exception:
    if not isinstance(answer, dict):
        return UnprocessableError(f"Salesforce composite answer lacks {sub.ref}", side=SIDE, item_id=item_id)
    body = answer.get("body")
    records = [r for r in body if isinstance(r, dict)] if isinstance(body, list) else []
    refused = [r for r in records if r.get("success") is False]
    if refused:  # an sObject Collections subrequest: the record's own error, as `_collection_ok` reads it
        errors = refused[0].get("errors") or [{}]
        code, message = str(errors[0].get("statusCode") or ""), str(errors[0].get("message") or "")
        return UnprocessableError(
            f"Salesforce refused an invitee of the event: {code}: {message}", side=SIDE, item_id=item_id
        )
    status = answer.get("httpStatusCode")
    headers = {str(k): str(v) for k, v in (answer.get("httpHeaders") or {}).items()}
    request = httpx.Request(sub.method, f"{data_path}/{sub.url}")
    alone = httpx.Response(
        status if isinstance(status, int) else 500, json=body, headers=headers, request=request
    )
    return translate_error(alone, item_id=item_id)
