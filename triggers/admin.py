"""Operator endpoints: health (function key), poison replay and a status page (master key); the gauges timer.

Routes live under `ops/`, not `admin/`: the Functions host reserves every route starting with "admin"
(even behind the `api` prefix) and refuses such a function at startup with "The specified route conflicts
with one or more built in routes" (azure-functions-host issue #1781). sync_core's operations are imported on
the first request, not with function_app (tests/core/test_cold_import.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING, Any

import azure.functions as func

from sync_core.errors import ConfigurationError, SyncError, UnprocessableError
from triggers.http import misconfigured

if TYPE_CHECKING:
    from sync_core.ops import operations as ops

bp = func.Blueprint()


def _json(body: Any, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when healthy, 503 when not (storage, subscription expiry, stale mailboxes): the verdict and
    counts only; the reasons, by mailbox, are on the admin-level status page and in the CLI's `status`."""
    from sync_core.bootstrap import container
    from sync_core.ops import operations as ops

    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    ok, body = await ops.health(c.storage, c.subscriptions, c.mailbox_states, c.policy, c.clock.now())
    return _json(ops.health_summary(body), 200 if ok else 503)


@bp.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    """Replay poison messages: {"mailbox", "error_class", "older_than", "message_id", "dry_run", "limit"}."""
    from sync_core.bootstrap import container
    from sync_core.ops import operations as ops

    try:
        c = container()
        request = ops.ReplayRequest.parse(req.get_body())
        report = await ops.replay(c.storage, c.failures, now=c.clock.now(), **request.options())
    except ConfigurationError as exc:
        return misconfigured(exc)
    except UnprocessableError as exc:
        return _json({"error": exc.message}, 400)
    except SyncError as exc:
        return _json({"error": str(exc)}, 503)
    return _json(report.to_dict(), 200 if report.ok else 500)


@bp.route(route="ops/status", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def ops_status(req: func.HttpRequest) -> func.HttpResponse:
    """A self-contained HTML page: mailboxes, poison messages with reasons and a replay button, decisions."""
    from sync_core.bootstrap import container
    from sync_core.ops import operations as ops

    try:
        c = container()
    except ConfigurationError as exc:
        return misconfigured(exc)
    now = c.clock.now()
    report = await ops.status(c.storage, c.subscriptions, c.mailbox_states, c.policy, now)
    poison = await ops.list_poison(c.storage, c.failures, peek=True, now=now)
    decisions = await ops.recent_decisions(c.storage, since=now - timedelta(hours=24), now=now)
    return func.HttpResponse(
        status_page(report, ops.problems(report), poison, decisions),
        mimetype="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",  # the key is in the query string
        },
    )


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
async def ops_gauges(timer: func.TimerRequest) -> None:
    """Every 5 minutes, when metrics go to Application Insights: read the status so the freshness, expiry
    and queue-depth gauges (sync.mailbox_freshness_seconds, ...) report current values."""
    from sync_core.adapters import telemetry
    from sync_core.bootstrap import container
    from sync_core.ops import operations as ops

    c = container()
    if telemetry.configure():
        await ops.status(c.storage, c.subscriptions, c.mailbox_states, c.policy, c.clock.now())


# -- the page --------------------------------------------------------------------------------------


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h {minutes % 60}m" if abs(minutes) >= 60 else f"{minutes}m"


def _rows(rows: list[list[str]], cls: list[str] | None = None) -> str:
    return "".join(
        f'<tr class="{escape(k)}">' + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
        for row, k in zip(rows, cls or [""] * len(rows), strict=True)
    )


_SCRIPT = """
const code = new URLSearchParams(location.search).get('code') || '';
async function replay(filters) {
  const dry = document.getElementById('dry').checked;
  const what = filters.message_id || 'the matching messages';
  if (!dry && !confirm('Move ' + what + ' back to sync-changes?')) return;
  const r = await fetch('replay?code=' + encodeURIComponent(code), {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({...filters, dry_run: dry})});
  const body = await r.json();
  document.getElementById('result').textContent = r.status + ' ' + JSON.stringify(body, null, 2);
  if (r.ok && !dry) setTimeout(() => location.reload(), 1500);
}
document.querySelectorAll('button[data-id]').forEach(b =>
  b.addEventListener('click', () => replay({message_id: b.dataset.id})));
document.getElementById('all').addEventListener('click', () => {
  const f = {};
  for (const k of ['mailbox', 'error_class', 'older_than']) {
    const v = document.getElementById(k).value.trim(); if (v) f[k] = v;
  }
  replay(f);
});
"""

_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;max-width:40em;
overflow-wrap:anywhere}th{background:#f3f3f3}.bad{background:#fde8e8}.ok{color:#17602b}
.problem{color:#a40000}pre{background:#f6f6f6;padding:.5em}th,button{white-space:nowrap}"""


def status_page(
    report: ops.StatusReport,
    problems: list[str],
    poison: list[ops.PoisonItem],
    decisions: list[dict[str, Any]],
) -> str:
    """The status page; every value is escaped, and the key never appears in it (the script reads it)."""
    from sync_core.ops.operations import PEEK_MAX

    mailboxes = [
        [
            m.mailbox,
            m.user,
            m.last_confirmed.isoformat() if m.last_confirmed else "never",
            _age(m.age),
            m.subscription_id or "none",
            m.subscription_status or "-",
            _age(m.expires_at - report.at) if m.expires_at else "-",
        ]
        for m in report.mailboxes
    ]
    flagged = [
        "bad" if any(p.startswith(m.mailbox + ":") for p in problems) else "" for m in report.mailboxes
    ]
    poison_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(v)}</td>"
            for v in (
                p.message_id,
                p.poisoned_at.isoformat() if p.poisoned_at else "-",
                p.kind,
                p.mailbox or "-",
                p.item_id or "-",
                p.error_class,
                p.reason,
            )
        )
        + f'<td><button data-id="{escape(p.message_id)}">replay</button></td></tr>'
        for p in poison
    )
    decision_rows = [
        [str(d["at"]), str(d["side"]), str(d["item_id"]), str(d["rule"]), str(d["outcome"]), str(d["reason"])]
        for d in decisions
    ]
    verdict = (
        '<p class="ok">healthy</p>'
        if not problems
        else "<ul>" + "".join(f'<li class="problem">{escape(p)}</li>' for p in problems) + "</ul>"
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Calendar sync status</title>
<style>{_STYLE}</style></head><body>
<h1>Calendar sync status</h1><p>at {escape(report.at.isoformat())}: sync-changes {report.queue_depth},
poison {report.poison_depth}</p>{verdict}
<h2>Mailboxes</h2><table><tr><th>mailbox</th><th>user</th><th>last confirmed in sync</th><th>age</th>
<th>subscription</th><th>status</th><th>expires in</th></tr>{_rows(mailboxes, flagged)}</table>
<h2>Poison messages</h2>
<p>Showing up to {PEEK_MAX} (a peek); the CLI's <code>failures</code> lists all.</p>
<table><tr><th>message id</th><th>poisoned</th><th>kind</th><th>mailbox</th><th>item</th><th>error class</th>
<th>reason</th><th></th></tr>{poison_rows}</table>
<p><input id="mailbox" placeholder="mailbox"> <input id="error_class" placeholder="error class">
<input id="older_than" placeholder="older than (2h)">
<label><input type="checkbox" id="dry" checked> dry run</label>
<button id="all">replay matching</button></p><pre id="result"></pre>
<h2>Recent decisions (24 h)</h2><table><tr><th>at</th><th>side</th><th>item</th><th>rule</th><th>outcome</th>
<th>reason</th></tr>{_rows(decision_rows)}</table>
<script>{_SCRIPT}</script></body></html>"""
