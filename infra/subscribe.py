"""First run in Azure: create the Graph subscription of each enabled sync mailbox, from an admin's machine.

The renewal timer (every 30 minutes) creates the subscriptions of newly enabled mailboxes, renews them and
re-creates lost ones; this subscribes at once instead of waiting for it, and queues each new mailbox's
initial backfill. It reads the deployed app's settings with the Azure CLI (resolving Key
Vault references with the admin's own access; variables already set in the admin's environment win), then
runs sync_core's SubscriptionManager for each mailbox: Graph validates the notification URL against the
deployed app, and the row lands in the app's table.

    python infra/subscribe.py --resource-group RG --name APP [--mailbox someone@contoso.example ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault(SecretUri="
# Inside Azure these select the app's managed identity; on the admin's machine `az login` is the credential.
AZURE_ONLY = ("AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId")

Runner = Callable[[list[str]], str]


def az(args: list[str]) -> str:
    """Run one Azure CLI command and return its JSON output."""
    done = subprocess.run(["az", *args, "--output", "json"], check=True, capture_output=True, text=True)
    return done.stdout


def app_environment(resource_group: str, app_name: str, run: Runner = az) -> dict[str, str]:
    """The deployed app's settings, Key Vault references resolved, Azure-only identity settings left out."""
    command = ["functionapp", "config", "appsettings", "list", "-g", resource_group, "-n", app_name]
    rows = json.loads(run(command))
    env: dict[str, str] = {}
    for row in rows:
        name, value = str(row["name"]), str(row.get("value") or "")
        if name in AZURE_ONLY:
            continue
        if value.startswith(KEY_VAULT_REFERENCE) and value.endswith(")"):
            secret_uri = value[len(KEY_VAULT_REFERENCE) : -1]
            value = str(json.loads(run(["keyvault", "secret", "show", "--id", secret_uri]))["value"])
        env[name] = value
    return env


async def subscribe(mailboxes: Sequence[str]) -> None:
    """Ensure a live subscription for each mailbox (default: every enabled sync user of the policy)."""
    from sync_core.bootstrap import configuration, opened

    _, policy = configuration()
    wanted = list(mailboxes) or [user.primary for user in policy.sync_users if user.enabled]
    if not wanted:
        raise SystemExit("the policy lists no enabled sync_users, and no --mailbox was given")
    async with opened() as container:
        subscriptions = container.subscription_manager()  # a newly subscribed mailbox gets its backfill (I5)
        for mailbox in wanted:
            row = await subscriptions.ensure(mailbox)
            print(f"{mailbox}: subscription {row.subscription_id}, expires {row.expires_at.isoformat()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python infra/subscribe.py", description=__doc__.splitlines()[0])
    parser.add_argument("--resource-group", "-g", required=True)
    parser.add_argument("--name", "-n", required=True, help="function app name (output functionAppName)")
    parser.add_argument("--mailbox", action="append", default=[], help="only this mailbox (repeatable)")
    args = parser.parse_args(argv)
    for name, value in app_environment(args.resource_group, args.name).items():
        os.environ.setdefault(name, value)  # the admin's own environment wins, e.g. for GRAPH_AUTH_MODE
    if os.environ.get("GRAPH_AUTH_MODE") == "managed_identity":
        raise SystemExit(
            "GRAPH_AUTH_MODE=managed_identity authenticates only inside Azure: set GRAPH_AUTH_MODE="
            "client_secret and GRAPH_CLIENT_SECRET (of the same app registration) in your environment"
        )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for sync_core
    asyncio.run(subscribe(args.mailbox))


if __name__ == "__main__":
    main()
