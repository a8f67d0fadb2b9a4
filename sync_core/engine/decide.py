"""The sync decision: one change in, the actions that follow out, each naming its rule (docs/sync-rules.md).
Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

from sync_core.domain.actions import Change, Mapping, Skip
from sync_core.domain.model import CrmRecord, GraphEvent, Side
from sync_core.domain.policy import Policy
from sync_core.engine.from_crm import crm_flow
from sync_core.engine.from_m365 import m365_flow
from sync_core.engine.inputs import Decision, Facts, Inputs


def decide(
    change: Change,
    mapping: Mapping | None,
    graph: GraphEvent | None,
    crm: CrmRecord | None,
    policy: Policy,
    now: datetime,
    facts: Facts | None = None,
) -> Decision:
    """Decide what one change means for the other side. Never raises for data it can explain: an item it
    will not sync yields a Skip naming the rule."""
    inputs = Inputs(change, mapping, graph, crm, policy, now, facts or Facts())
    if change.source is Side.M365:
        actions, key, new_mapping = m365_flow(inputs)
    else:
        actions, key, new_mapping = crm_flow(inputs)
    if not actions:  # defensive: a flow always explains itself
        actions = [Skip(rule="W4", reason="nothing differs")]
    first = actions[0]
    return Decision(
        actions=tuple(actions),
        meeting_key=key,
        rule=first.rule,
        reason=first.reason,
        mapping=new_mapping,
    )
