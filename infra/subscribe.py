"""First run in Azure: set each front door's function key, then create the Graph subscription of each
enabled sync mailbox, from an admin's machine.

Function keys: graph/notifications and graph/lifecycle get the key `graph` (WEBHOOK_FUNCTION_KEY, the key
the app puts in its notification URLs), crm/webhook the key `crm` (CRM_FUNCTION_KEY); both values come from
Key Vault. A host key would open every function; ops/* stays at admin level (the master key). This is done
here, not in the template, because a function exists only once the host has indexed the published package
(Flex Consumption), and Microsoft.Web/sites/functions/keys needs the function (docs/deploy.md).

The renewal timer (every 30 minutes) creates the subscriptions of newly enabled mailboxes, renews them and
re-creates lost ones; this subscribes at once instead of waiting for it, and queues each new mailbox's
initial backfill. It reads the deployed app's settings with the Azure CLI (resolving the Key Vault
references it needs with the admin's own access: the operator may read only the Graph secret and the two
function keys; variables already set in the admin's environment win), then runs sync_core's
SubscriptionManager for each mailbox: Graph validates the notification URL, with the Graph routes' key,
against the deployed app, and the row lands in the app's table.

    python infra/subscribe.py --resource-group RG --name APP [--mailbox someone@contoso.example ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault(SecretUri="
# Inside Azure these select the app's managed identity; on the admin's machine `az login` is the credential.
AZURE_ONLY = ("AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId")

Runner = Callable[[list[str]], str]

# Settings whose Key Vault secret subscribing uses (the operator has Key Vault Secrets User on these only,
# infra/modules/keyvault.bicep operatorSecretNames, with the CRM function key below).
RESOLVED = ("GRAPH_CLIENT_SECRET", "WEBHOOK_FUNCTION_KEY")
# Key Vault secret of the CRM route's function key, beside WEBHOOK_FUNCTION_KEY's in the same vault.
CRM_KEY_SECRET = "crm-function-key"
# Function name (as the host indexes function_app) -> the key name it gets, and the setting holding its value.
FUNCTION_KEYS = {
    "graph_notifications": ("graph", "WEBHOOK_FUNCTION_KEY"),
    "graph_lifecycle": ("graph", "WEBHOOK_FUNCTION_KEY"),
    "crm_webhook": ("crm", "CRM_FUNCTION_KEY"),
    "dataverse_webhook": ("crm", "CRM_FUNCTION_KEY"),  # the CRM's door when CRM_CONNECTOR=dataverse
    "salesforce_webhook": ("crm", "CRM_FUNCTION_KEY"),  # the CRM's door when CRM_CONNECTOR=salesforce
}


def az(args: list[str]) -> str:
    """Run one Azure CLI command and return its JSON output."""
    done = subprocess.run(["az", *args, "--output", "json"], check=True, capture_output=True, text=True)
    return done.stdout


def _secret(secret_uri: str, run: Runner) -> str:
    return str(json.loads(run(["keyvault", "secret", "show", "--id", secret_uri]))["value"])


def _reference(value: str) -> str | None:
    """The secret URI of a Key Vault reference, or None."""
    if value.startswith(KEY_VAULT_REFERENCE) and value.endswith(")"):
        return value[len(KEY_VAULT_REFERENCE) : -1]
    return None


def app_environment(resource_group: str, app_name: str, run: Runner = az) -> dict[str, str]:
    """The deployed app's settings, the Key Vault references subscribing needs resolved, Azure-only identity
    settings left out. The other secrets (CRM token, CRM webhook and tag secrets) are validated when the app's
    container opens but never used to subscribe: they get a random stand-in, so the operator needs no access
    to them. CRM_FUNCTION_KEY is read from the secret beside WEBHOOK_FUNCTION_KEY's."""
    command = ["functionapp", "config", "appsettings", "list", "-g", resource_group, "-n", app_name]
    rows = json.loads(run(command))
    env: dict[str, str] = {}
    for row in rows:
        name, value = str(row["name"]), str(row.get("value") or "")
        if name in AZURE_ONLY:
            continue
        uri = _reference(value)
        if uri is not None:
            value = _secret(uri, run) if name in RESOLVED else secrets.token_hex(32)
            if name == "WEBHOOK_FUNCTION_KEY":
                env["CRM_FUNCTION_KEY"] = _secret(f"{uri.rsplit('/', 1)[0]}/{CRM_KEY_SECRET}", run)
        env[name] = value
    return env


def set_function_keys(resource_group: str, app_name: str, env: dict[str, str], run: Runner = az) -> None:
    """Give each front door its own function key (idempotent: the same name and value again)."""
    missing = sorted({setting for _, setting in FUNCTION_KEYS.values() if not env.get(setting)})
    if missing:
        raise SystemExit(f"{', '.join(missing)} not set: no function key was changed")
    for function, (key_name, setting) in FUNCTION_KEYS.items():
        value = env[setting]
        command = ["functionapp", "function", "keys", "set", "-g", resource_group, "-n", app_name]
        run([*command, "--function-name", function, "--key-name", key_name, "--key-value", value])
        print(f"{function}: function key {key_name!r} set")


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
    # Before subscribing: Graph validates the notification URL, with the Graph routes' key, at once.
    set_function_keys(args.resource_group, args.name, dict(os.environ))
    if os.environ.get("GRAPH_AUTH_MODE") == "managed_identity":
        raise SystemExit(
            "GRAPH_AUTH_MODE=managed_identity authenticates only inside Azure: set GRAPH_AUTH_MODE="
            "client_secret and GRAPH_CLIENT_SECRET (of the same app registration) in your environment"
        )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for sync_core
    asyncio.run(subscribe(args.mailbox))


if __name__ == "__main__":
    main()
