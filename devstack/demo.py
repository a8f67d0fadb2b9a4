"""Against a running `make run`: create an event in Outlook (the Graph emulator), time its arrival in the CRM,
then replay Graph's notification three times and show that the CRM still holds one record.

    python -m devstack.demo
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from devstack.run import CRM_PORT, GRAPH_PORT, HOST_PORT, load_local_settings


def main() -> int:
    values = load_local_settings()
    graph = f"http://127.0.0.1:{GRAPH_PORT}"
    crm = f"http://127.0.0.1:{CRM_PORT}"
    crm_auth = {"Authorization": f"Bearer {values['CRM_API_TOKEN']}"}
    subject = f"Demo {uuid.uuid4().hex[:6]}"
    day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    event = {
        "subject": subject,
        "start": {"dateTime": f"{day}T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"{day}T09:30:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }

    def matching() -> list[dict[str, object]]:
        records = httpx.get(f"{crm}/appointments", headers=crm_auth, timeout=5).json()["records"]
        return [r for r in records if r.get("subject") == subject]

    started = time.monotonic()
    mailbox_events = f"{graph}/v1.0/users/adele@contoso.example/events"
    created = httpx.post(mailbox_events, json=event, headers={"Authorization": "Bearer demo"}).json()
    while not matching():
        if time.monotonic() - started > 10:
            print("not in the CRM after 10 s: is `make run` up?", file=sys.stderr)
            return 1
        time.sleep(0.01)
    print(f"created {subject!r} in adele's mailbox; in the CRM after {time.monotonic() - started:.3f} s")

    sent = httpx.get(f"{graph}/_emulator/notifications").json()
    payload = next(n["payload"] for n in sent if created["id"] in json.dumps(n["payload"]))
    url = f"http://127.0.0.1:{HOST_PORT}/api/graph/notifications?code={values['DEVHOST_FUNCTION_KEY']}"
    for _ in range(3):
        httpx.post(url, json=payload, timeout=5).raise_for_status()
    time.sleep(1.0)
    print(f"replayed Graph's notification 3 times; CRM records for it: {len(matching())}")
    return 0 if len(matching()) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
