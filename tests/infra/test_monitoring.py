"""Alerts and the workbook: each rule mails the action group; every telemetry name they read is documented."""

from __future__ import annotations

import re

import pytest
from bicep_reader import INFRA, bicep_files, load, string_value, text

ALERTS = INFRA / "modules" / "alerts.bicep"
WORKBOOK = INFRA / "modules" / "workbook.bicep"

_TELEMETRY_NAME = re.compile(r"\bsync\.[a-z_]+\b")


def _resources(path_type_prefix: str) -> list[str]:
    bicep = load(ALERTS)
    return [
        text(node)
        for node in bicep.nodes("resource_declaration")
        if string_value(node.named_children[1]).startswith(path_type_prefix)
    ]


def test_telemetry_names_the_templates_read_are_documented(deploy_doc: str) -> None:
    names = {name for path in bicep_files() for name in _TELEMETRY_NAME.findall(path.read_text())}
    assert {"sync.mailbox_freshness_seconds", "sync.subscription_expiry_seconds"} <= names
    undocumented = {name for name in names if f"`{name}`" not in deploy_doc}
    assert not undocumented, f"read by infra/ but not described in docs/deploy.md: {sorted(undocumented)}"


@pytest.mark.parametrize(
    "rule", ["poison-queue", "mailbox-freshness", "subscription-expiry", "function-failures"]
)
def test_alert_rule_exists_and_mails_the_action_group(rule: str) -> None:
    rules = [r for r in _resources("Microsoft.Insights/scheduledQueryRules@") if f"-{rule}'" in r]
    assert len(rules) == 1, f"expected one scheduled query rule named ...-{rule}"
    assert "actionGroup.id" in rules[0]


def test_action_group_mails_the_address_given_as_parameter() -> None:
    (group,) = _resources("Microsoft.Insights/actionGroups@")
    assert "emailAddress: alertEmail" in group
    assert load(ALERTS).params()["alertEmail"].value is None  # no default address


def test_poison_alert_reads_the_queue_sync_core_poisons() -> None:
    (rule,) = [r for r in _resources("Microsoft.Insights/scheduledQueryRules@") if "-poison-queue'" in r]
    assert "format(poisonQuery, poisonQueueName, queueDepthMetric)" in rule
    assert "PutMessage" in text(load(ALERTS).var("poisonQuery"))


def test_workbook_shows_latency_actions_by_rule_and_failures() -> None:
    source = WORKBOOK.read_text()
    assert "serializedData: string(workbookContent)" in source
    for query in ("workerLatencyQuery", "decisionsByRuleQuery", "failedInvocationsQuery"):
        assert text(load(WORKBOOK).var(query)).startswith("'''")
    # The worker's decision line the workbook parses (sync_core/service/worker.py).
    worker = (INFRA.parent / "sync_core" / "service" / "worker.py").read_text()
    assert '"decided %s for %s %s: %s (%s) writes=%s [%s]"' in worker
