"""The chaos run's moving parts: a stack with M sync mailboxes and a killable host, the workload on both
sides, and the final comparison of the two sides.

Everything real: devstack.stack.LocalStack (Azurite, both emulators, the development host serving
function_app), faults through the emulators' own fault settings, kills by stopping the host with no drain
time (its in-flight invocations are cancelled where they stand, as a host restart does) and starting a
fresh one on the same port. The CRM side is the REST contract's emulator or Dataverse's (`CrmSide`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.host import DevHost
from devstack.run import DEMO_USERS
from devstack.stack import ROOT, LocalStack
from tests.chaos.sides import EXTERNAL, CrmSide, DataverseSide, RestSide, utc


def mailbox_names(count: int) -> list[str]:
    demo = [email for email, _ in DEMO_USERS]
    return (demo + [f"chaos{i:02d}@contoso.example" for i in range(max(0, count - len(demo)))])[:count]


def policy_json(mailboxes: list[str]) -> str:
    policy = json.loads((ROOT / "devstack" / "demo-policy.json").read_text())
    policy["sync_users"] = [{"email": m, "crm_user_id": f"u-{m.split('@')[0]}"} for m in mailboxes]
    return json.dumps(policy)


class ChaosStack(LocalStack):
    """LocalStack with M sync mailboxes (policy written to `policy_file`) and a host that can be killed."""

    mailboxes: list[str]
    policy_file: Path
    throttling: threading.Event  # set: DataverseSide's throttle thread stops

    @property
    def extra(self) -> list[str]:
        return self.mailboxes[len(DEMO_USERS) :]

    async def _prepare(self) -> None:
        from sync_core.bootstrap import configuration

        self.policy_file.write_text(policy_json(self.mailboxes))
        self.settings["SYNC_POLICY_FILE"] = os.environ["SYNC_POLICY_FILE"] = str(self.policy_file)
        configuration.cache_clear()
        for m in self.extra:
            self.graph.add_mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, m)), m, m.split("@")[0])
        self.side.seed_users(self.extra)
        await super()._prepare()

    @property
    def side(self) -> CrmSide:
        return DataverseSide(self) if self.connector == "dataverse" else RestSide(self)

    def fresh_host(self) -> DevHost:
        import function_app

        host_json = json.loads((ROOT / "host.json").read_text())
        host_json["extensions"]["queues"]["maxPollingInterval"] = self.polling_interval
        host = DevHost(function_app.app, self.settings, host_json, port=self.host.port, drain_seconds=0.0)
        host.start()
        return host


class CancelCounter(logging.Handler):
    """Counts invocations the host cancelled at stop (its own log line says how many)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.cancelled = 0

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"cancelled (\d+) invocations", record.getMessage())
        if found:
            self.cancelled += int(found.group(1))


class Killer(threading.Thread):
    """Every `every` seconds: stop the host with no drain (in-flight messages cancelled) and start anew."""

    def __init__(self, stack: ChaosStack, every: float) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.stack, self.every = stack, every
        self.stop_event = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            self.stack.host.stop()
            self.kills += 1
            time.sleep(0.2)
            self.stack.host = self.stack.fresh_host()

    def finish(self) -> None:
        self.stop_event.set()
        self.join()


@dataclass
class Item:
    """One meeting made by the workload on `side` ("m365" or "crm")."""

    side: str
    mailbox: str
    subject: str
    start: datetime
    source_id: str = ""
    final_subject: str = ""
    removed: bool = False  # deleted in M365 / cancelled in the CRM


@dataclass
class Workload:
    stack: ChaosStack
    mailboxes: list[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    items: list[Item] = field(default_factory=list)
    own_retries: int = 0

    def _graph(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The test's own Graph calls go through the same faults: retried (POSTs carry a transactionId)."""
        with self.stack.graph_http() as g:
            for _ in range(30):
                r = g.request(method, path, **kwargs)
                if r.status_code not in (429, 503):
                    return r
                self.own_retries += 1
                time.sleep(0.2)
        r.raise_for_status()
        return r

    def create(self, i: int) -> None:
        mailbox = self.mailboxes[i % len(self.mailboxes)]
        start = (datetime.now(UTC) + timedelta(days=3 + i % 20)).replace(
            hour=8 + i % 9, minute=0, second=0, microsecond=0
        )
        side = "m365" if i % 2 == 0 else "crm"
        item = Item(side, mailbox, f"chaos {self.tag} {side} {i}", start)
        item.final_subject = item.subject
        if side == "m365":
            body = {
                "subject": item.subject,
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
                "attendees": [{"emailAddress": {"address": EXTERNAL}, "type": "required"}],
                "transactionId": f"chaos-{self.tag}-{i}",
            }
            r = self._graph("POST", f"/users/{mailbox}/events", json=body)
            r.raise_for_status()
            item.source_id = r.json()["id"]
        else:
            item.source_id = self.stack.side.create(item)
        self.items.append(item)

    def edit(self, item: Item) -> None:
        item.final_subject = f"{item.subject} v2"
        if item.side == "m365":
            path = f"/users/{item.mailbox}/events/{item.source_id}"
            self._graph("PATCH", path, json={"subject": item.final_subject}).raise_for_status()
        else:
            self.stack.side.rename(item.source_id, item.final_subject, item.mailbox)

    def remove(self, item: Item) -> None:
        item.removed = True
        if item.side == "m365":
            self._graph("DELETE", f"/users/{item.mailbox}/events/{item.source_id}")
        else:
            self.stack.side.cancel(item.source_id)


@dataclass
class Verdict:
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)


def compare(stack: ChaosStack, work: Workload) -> Verdict:
    """Both sides against what the workload did: one live copy per meeting, same subject and times."""
    verdict = Verdict()
    records = [r for r in stack.side.records() if f"chaos {work.tag} " in str(r.get("subject"))]
    events: list[dict[str, Any]] = []
    for mailbox_events in stack.graph.dump_events().values():
        events += [e for e in mailbox_events if f"chaos {work.tag} " in str(e.get("subject"))]
    for item in work.items:
        names = {item.subject, f"{item.subject} v2"}
        crm = [r for r in records if r["subject"] in names]
        crm_live = [r for r in crm if not r["cancelled"]]
        m365 = [
            e
            for e in events
            if str(e.get("subject")).removeprefix("Canceled: ") in names
            and (e.get("organizer") or {}).get("emailAddress", {}).get("address", "").lower() == item.mailbox
        ]
        m365_live = [e for e in m365 if not e.get("isCancelled")]
        label = f"{item.side} {item.subject!r}"
        if len(crm) > 1 or len(m365) > 1:
            verdict.duplicates.append(f"{label}: {len(crm)} CRM records, {len(m365)} M365 events")
        if item.removed:
            if crm_live or m365_live:
                verdict.lost.append(
                    f"{label}: removed, still live ({len(crm_live)} CRM, {len(m365_live)} M365)"
                )
            continue
        if len(crm_live) != 1 or len(m365_live) != 1:
            verdict.lost.append(
                f"{label}: {len(crm_live)} live CRM records, {len(m365_live)} live M365 events"
            )
            continue
        r, e = crm_live[0], m365_live[0]
        if r["subject"] != item.final_subject or e["subject"] != item.final_subject:
            verdict.lost.append(f"{label}: subject CRM {r['subject']!r}, M365 {e['subject']!r}")
        elif r["start"] != utc(e["start"]["dateTime"]) or r["end"] != utc(e["end"]["dateTime"]):
            verdict.disagree.append(
                f"{label}: times CRM {r['start']}..{r['end']}, M365 {e['start']}..{e['end']}"
            )
    return verdict
