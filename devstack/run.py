"""`make run`: the whole local stack on loopback, wired like Azure, with demo mailboxes subscribed.

Azurite (state kept in .devstack/azurite), the Graph emulator, the CRM emulator, and the development host
serving function_app on http://127.0.0.1:7071. Ctrl-C stops everything it started.

`make run CRM=dataverse` (or `--crm dataverse`; the environment variable CRM is the default) runs the
Dataverse emulator instead of the CRM emulator, with CRM_CONNECTOR=dataverse and its webhook registered;
`make run CRM=salesforce` the Salesforce emulator, with CRM_CONNECTOR=salesforce and its outbound message
posting to /api/crm/salesforce/webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_DIR = ROOT / ".devstack"
GRAPH_PORT = 7081
CRM_PORT = 7082
DATAVERSE_PORT = 7083
SALESFORCE_PORT = 7084
HOST_PORT = 7071
CRMS = ("rest", "dataverse", "salesforce")

DEMO_USERS = [
    ("adele@contoso.example", "Adele Vance"),
    ("bruno@contoso.example", "Bruno Costa"),
    ("chen@contoso.example", "Chen Wei"),
]
DEMO_ROOMS = [
    ("harbour-room@contoso.example", "Harbour Room", "auto_accept"),
    ("summit-hall@contoso.example", "Summit Hall", "moderated"),
]
DEMO_CONTACTS = [
    ("megan@fabrikam.example", "Megan Bowen"),
    ("lee@fabrikam.example", "Lee Gu"),
]


# The front doors that others call, each with its own function key as in Azure: Graph is told its key in
# every subscription's notificationUrl (`?code=`, WEBHOOK_FUNCTION_KEY), the CRM is configured with its
# own; neither key opens the other's routes. The host-level function key (DEVHOST_FUNCTION_KEY) opens all
# FUNCTION-level routes, the master key (DEVHOST_MASTER_KEY) also the ADMIN-level ops/ routes.
GRAPH_FUNCTIONS = ("graph_notifications", "graph_lifecycle")
CRM_FUNCTIONS = ("crm_webhook", "dataverse_webhook", "salesforce_webhook")
DEV_GRAPH_KEY = "dev-graph-function-key"
DEV_CRM_KEY = "dev-crm-function-key"


def webhook_key_settings(graph_key: str, crm_key: str) -> dict[str, str]:
    """The settings that give the Graph and CRM functions their own keys (devstack.host reads
    `DEVHOST_FUNCTION_KEY__<function>`), and tell the app the Graph key to put in notification URLs."""
    own = {f"DEVHOST_FUNCTION_KEY__{name}": graph_key for name in GRAPH_FUNCTIONS}
    own.update({f"DEVHOST_FUNCTION_KEY__{name}": crm_key for name in CRM_FUNCTIONS})
    return {"WEBHOOK_FUNCTION_KEY": graph_key, **own}


def with_webhook_keys(values: dict[str, str]) -> dict[str, str]:
    """local.settings.json's values with the webhook keys filled in where it has none of its own. A
    WEBHOOK_FUNCTION_KEY equal to the host-level key (the sample's) is replaced: a key Graph is told must not
    open every route."""
    graph = values.get("DEVHOST_FUNCTION_KEY__graph_notifications") or values.get("WEBHOOK_FUNCTION_KEY", "")
    if not graph or graph == values.get("DEVHOST_FUNCTION_KEY"):
        graph = DEV_GRAPH_KEY
    crm = values.get("DEVHOST_FUNCTION_KEY__crm_webhook") or DEV_CRM_KEY
    return {**values, **webhook_key_settings(graph, crm)}


def load_local_settings() -> dict[str, str]:
    """local.settings.json's Values (created from the sample on first run), as Core Tools would read them."""
    path = ROOT / "local.settings.json"
    if not path.exists():
        shutil.copy(ROOT / "local.settings.sample.json", path)
        print(f"created {path.name} from local.settings.sample.json")
    values = json.loads(path.read_text())["Values"]
    return {str(k): str(v) for k, v in values.items()}


def seed_graph(emu: Any) -> None:
    for email, name in DEMO_USERS:
        emu.add_mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, email)), email, name, kind="user")
    for email, name, mode in DEMO_ROOMS:
        emu.add_mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, email)), email, name, kind="room", room_mode=mode)


def seed_crm(emu: Any) -> None:
    emu.seed(
        users=[
            {"id": f"u-{email.split('@')[0]}", "email": email, "name": name, "mailbox": email}
            for email, name in DEMO_USERS
        ],
        contacts=[
            {"id": f"c-{i}", "email": email, "name": name} for i, (email, name) in enumerate(DEMO_CONTACTS)
        ],
        spaces=[
            {
                "id": "s-harbour",
                "name": "Harbour Room",
                "room_mailbox": DEMO_ROOMS[0][0],
                "management_mode": "outlook_auto_accept",
            },
            {
                "id": "s-summit",
                "name": "Summit Hall",
                "room_mailbox": DEMO_ROOMS[1][0],
                "management_mode": "crm_managed",
            },
        ],
    )


def dataverse_id(name: str) -> str:
    """The seeded Dataverse id of a demo user or contact (by email) or room (harbour, summit)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"dataverse.{name}"))


def seed_dataverse(emu: Any) -> None:
    """The demo directory in Dataverse: system users (Entra users, so mailboxes), contacts and equipment."""
    emu.seed(
        users=[
            {"id": dataverse_id(email), "email": email, "name": name, "mailbox": email}
            for email, name in DEMO_USERS
        ],
        contacts=[{"id": dataverse_id(email), "email": email, "name": name} for email, name in DEMO_CONTACTS],
        spaces=[
            {
                "id": dataverse_id("harbour"),
                "name": "Harbour Room",
                "room_mailbox": DEMO_ROOMS[0][0],
                "management_mode": "outlook_auto_accept",
            },
            {
                "id": dataverse_id("summit"),
                "name": "Summit Hall",
                "room_mailbox": DEMO_ROOMS[1][0],
                "management_mode": "crm_managed",
            },
        ],
    )


def dataverse_settings(url: str) -> dict[str, str]:
    """The app's settings for the Dataverse emulator at `url` (its static token: DATAVERSE_AUTH_MODE)."""
    return {"CRM_CONNECTOR": "dataverse", "DATAVERSE_URL": url, "DATAVERSE_AUTH_MODE": "emulator"}


def dataverse_webhook(host_base: str, function_key: str, secret: str) -> tuple[str, dict[str, str]]:
    """Where the Dataverse emulator's service endpoint posts, and its HttpHeader authentication pairs: the
    function key of dataverse_webhook (the host's check) and a CRM_WEBHOOK_SECRETS secret (the app's)."""
    from sync_core.adapters.crm.dataverse_webhook import KEY_HEADER

    return f"{host_base}/api/crm/dataverse/webhook", {"x-functions-key": function_key, KEY_HEADER: secret}


def seed_salesforce(emu: Any) -> None:
    """The demo directory in Salesforce: single-sign-on users (their Email is the mailbox), contacts and
    our msync_Space__c rooms; the emulator makes the ids."""
    emu.seed(
        users=[{"email": email, "name": name, "mailbox": email} for email, name in DEMO_USERS],
        contacts=[{"email": email, "name": name} for email, name in DEMO_CONTACTS],
        spaces=[
            {
                "name": "Harbour Room",
                "room_mailbox": DEMO_ROOMS[0][0],
                "management_mode": "outlook_auto_accept",
            },
            {"name": "Summit Hall", "room_mailbox": DEMO_ROOMS[1][0], "management_mode": "crm_managed"},
        ],
    )


def salesforce_settings(url: str) -> dict[str, str]:
    """The app's settings for the Salesforce emulator at `url` (its client credentials: SALESFORCE_AUTH_MODE),
    with the emulated org's id for the outbound messages."""
    from devstack.salesforce_emulator import ORG_ID

    return {
        "CRM_CONNECTOR": "salesforce",
        "SALESFORCE_INSTANCE_URL": url,
        "SALESFORCE_AUTH_MODE": "emulator",
        "SALESFORCE_ORG_ID": ORG_ID,
    }


def salesforce_outbound_url(host_base: str, function_key: str) -> str:
    """The endpoint URL of the outbound message, as configured in Salesforce: the key in `?code=` (an
    outbound message sends no headers of ours)."""
    return f"{host_base}/api/crm/salesforce/webhook?code={function_key}"


async def prepare(mailboxes: list[str]) -> None:
    """Create queues and tables, and a Graph subscription per sync mailbox (the emulator shakes hands)."""
    from sync_core.bootstrap import opened

    async with opened() as c:
        await c.storage.ensure()
        subscriptions = c.subscription_manager()  # a newly subscribed mailbox gets its backfill (I5)
        for mailbox in mailboxes:
            row = await subscriptions.ensure(mailbox)
            print(f"  subscribed {mailbox}: subscription {row.subscription_id}")


def banner(values: dict[str, str], graph_url: str, crm_url: str, crm: str = "rest") -> str:
    key = values.get("DEVHOST_FUNCTION_KEY", "")
    graph_key = values.get("DEVHOST_FUNCTION_KEY__graph_notifications", "")
    crm_key = values.get("DEVHOST_FUNCTION_KEY__crm_webhook", "")
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()  # inside the policy's window (S6)
    event = json.dumps(
        {
            "subject": "Quarterly review with Fabrikam",
            "start": {"dateTime": f"{day}T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"{day}T11:00:00", "timeZone": "UTC"},
            "attendees": [
                {
                    "emailAddress": {"address": "megan@fabrikam.example", "name": "Megan Bowen"},
                    "type": "required",
                }
            ],
        }
    )
    return f"""
Local stack is up (Ctrl-C stops everything):
  function app   http://127.0.0.1:{HOST_PORT}/api/...   (host function key: {key}; Graph's: {graph_key};
                 the CRM's: {crm_key}; ops/ takes the master key: {values.get("DEVHOST_MASTER_KEY", "")})
  Graph emulator {graph_url}
  {(crm.title() if crm != "rest" else "CRM") + " emulator":<14} {crm_url}

Create an event in Adele's mailbox through the emulator's Graph API:
  curl -s -X POST {graph_url}/users/adele@contoso.example/events \\
       -H 'Authorization: Bearer dev' -H 'Content-Type: application/json' \\
       -d '{event}'

Within a second it is in the CRM:
{_crm_lines(values, crm_url, crm)}
Repeat the notification Graph sent (the emulator keeps it) and nothing new is created:
  curl -s {graph_url.removesuffix("/v1.0")}/_emulator/notifications

Why did (or didn't) something sync? The decision log is in Azurite's SyncDecisions table.
"""


def _crm_lines(values: dict[str, str], crm_url: str, crm: str) -> str:
    if crm == "salesforce":
        return _salesforce_lines(crm_url)
    if crm != "dataverse":
        return (
            f"  curl -s {crm_url}/appointments -H 'Authorization: Bearer {values.get('CRM_API_TOKEN', '')}'\n"
        )
    from devstack.dataverse_emulator import DEFAULT_TOKEN

    return f"""  curl -s '{crm_url}/api/data/v9.2/appointments?$select=subject,scheduledstart,statecode' \\
       -H 'Authorization: Bearer {DEFAULT_TOKEN}'
  (with its parties: curl -s {crm_url}/_emulator/appointments)

Edit it as a Dataverse user (the emulator posts the webhook, and Outlook follows):
  curl -s -X PATCH {crm_url}/_emulator/user/appointments/<activityid> -H 'Content-Type: application/json' \\
       -d '{{"subject": "Quarterly review (moved)", "updated_by": "adele@contoso.example"}}'
Cancel it in Dataverse:
  curl -s -X POST {crm_url}/_emulator/user/appointments/<activityid>/cancel
"""


def _salesforce_lines(url: str) -> str:
    from devstack.salesforce_emulator import API_VERSION, CLIENT_ID, CLIENT_SECRET

    return f"""  curl -s {url}/_emulator/events
  (or through the REST API: a token first, then SOQL)
  TOKEN=$(curl -s {url}/services/oauth2/token -d grant_type=client_credentials \\
          -d client_id={CLIENT_ID} -d client_secret={CLIENT_SECRET} \\
          | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -G {url}/services/data/{API_VERSION}/query -H "Authorization: Bearer $TOKEN" \\
       --data-urlencode 'q=SELECT Id, Subject, StartDateTime, msync_Status__c FROM Event'

Edit it as a Salesforce user (the emulator's outbound message posts to /api/crm/salesforce/webhook, and
Outlook follows):
  curl -s -X PATCH {url}/_emulator/user/events/<Id> -H 'Content-Type: application/json' \\
       -d '{{"Subject": "Quarterly review (moved)", "updated_by": "adele@contoso.example"}}'
Cancel it in Salesforce (our msync_Status__c field):
  curl -s -X PATCH {url}/_emulator/user/events/<Id> -H 'Content-Type: application/json' \\
       -d '{{"msync_Status__c": "cancelled", "updated_by": "adele@contoso.example"}}'
The outbound messages sent and their answers (200 and Ack true, or retried):
  curl -s {url}/_emulator/outbound/deliveries
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__)
    parser.add_argument(
        "--crm",
        choices=CRMS,
        default=os.environ.get("CRM") or "rest",
        help="the CRM side: our REST contract's emulator, or the Dataverse or Salesforce emulator "
        "(default: $CRM or rest)",
    )
    crm_kind = parser.parse_args(argv).crm
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    values = with_webhook_keys(load_local_settings())
    for k, v in values.items():
        os.environ.setdefault(k, v)

    from devstack.azurite import Azurite
    from devstack.crm_emulator import CrmEmulator
    from devstack.dataverse_emulator import DataverseEmulator
    from devstack.graph_emulator import GraphEmulator
    from devstack.host import DevHost
    from devstack.salesforce_emulator import SalesforceEmulator

    crm_key = values["DEVHOST_FUNCTION_KEY__crm_webhook"]
    if crm_kind == "dataverse":
        values |= dataverse_settings(f"http://127.0.0.1:{DATAVERSE_PORT}")
        os.environ.update(dataverse_settings(f"http://127.0.0.1:{DATAVERSE_PORT}"))
    elif crm_kind == "salesforce":
        values |= salesforce_settings(f"http://127.0.0.1:{SALESFORCE_PORT}")
        os.environ.update(salesforce_settings(f"http://127.0.0.1:{SALESFORCE_PORT}"))
    stopping = threading.Event()
    started: list[Any] = []
    try:
        azurite = Azurite(
            data_dir=DEVSTACK_DIR / "azurite", blob_port=10000, queue_port=10001, table_port=10002
        )
        azurite.start()
        started.append(azurite)
        graph = GraphEmulator(port=GRAPH_PORT)
        graph.start()
        started.append(graph)
        seed_graph(graph)
        secret = values.get("CRM_WEBHOOK_SECRETS", "").split(",")[0]
        crm: Any
        if crm_kind == "dataverse":
            url, headers = dataverse_webhook(
                f"http://127.0.0.1:{HOST_PORT}", values["DEVHOST_FUNCTION_KEY__dataverse_webhook"], secret
            )
            crm = DataverseEmulator(port=DATAVERSE_PORT, webhook_url=url, webhook_headers=headers)
            crm.start()
            started.append(crm)
            seed_dataverse(crm)
        elif crm_kind == "salesforce":
            outbound = salesforce_outbound_url(
                f"http://127.0.0.1:{HOST_PORT}", values["DEVHOST_FUNCTION_KEY__salesforce_webhook"]
            )
            crm = SalesforceEmulator(port=SALESFORCE_PORT, outbound_url=outbound)
            crm.start()
            started.append(crm)
            seed_salesforce(crm)
        else:
            crm = CrmEmulator(
                port=CRM_PORT,
                webhook_url=f"http://127.0.0.1:{HOST_PORT}/api/crm/webhook?code={crm_key}",
                webhook_secret=secret,
                token=values.get("CRM_API_TOKEN", "dev-crm-token"),
            )
            crm.start()
            started.append(crm)
            seed_crm(crm)

        import function_app

        host_json = json.loads((ROOT / "host.json").read_text())
        from sync_core.bootstrap import close_container, configuration

        host = DevHost(function_app.app, values, host_json, port=HOST_PORT, on_stop=(close_container,))
        host.start()
        started.append(host)

        _, policy = configuration()
        mailboxes = [u.primary_mailbox or u.email for u in policy.sync_users if u.enabled]
        asyncio.run(prepare(mailboxes))
        print(banner(values, graph.base_url, crm.base_url, crm_kind))
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for svc in reversed(started):
            try:
                svc.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"while stopping {type(svc).__name__}: {exc}", file=sys.stderr)
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
