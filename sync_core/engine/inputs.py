"""What the engine is given and returns: the gathered facts, one change's inputs, the decision. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from sync_core.domain.actions import Action, Change, Mapping
from sync_core.domain.model import CrmRecord, GraphEvent
from sync_core.domain.policy import Policy


class Facts(BaseModel):
    """What the shell gathered besides the two sides and the mapping. Every field has a safe default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    known_contacts: frozenset[str] = frozenset()  # attendee emails that resolve to CRM contacts (S5, F2)
    room_overlaps: tuple[GraphEvent, ...] = ()  # other invitations in the same room and slot (M4)
    deletes_this_run: int = 0  # cancels/deletes already decided in this run for this mailbox (X1)
    series_mapping: Mapping | None = None  # the mapping of the series an occurrence belongs to (R3)
    series_key: str | None = None  # meeting key of the series master of an occurrence (I1)
    occurrence_event_id: str | None = None  # Graph id of the occurrence a CRM exception edits (R3)
    logical_removal: bool = False  # the item left scope but still exists: unlink, never delete (X1)
    crm_mapped_under: str | None = None  # the meeting key the CRM record is already mapped under, if any
    graph_gone: bool = False  # Graph answered "not found" for every copy the mapping names (L4 evidence)


class Decision(BaseModel):
    """The actions for one change, the rule that decided and why (E1), and the mapping row to save."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[Action, ...]
    meeting_key: str | None
    rule: str  # the primary rule: the first action's
    reason: str
    mapping: Mapping | None = None  # the row to save once the writes succeed; None with Unlink: delete it

    @property
    def writes(self) -> tuple[Action, ...]:
        """The actions that change a side (everything but Skip, LinkCopy, Unlink, NotifyOrganizer)."""
        return tuple(
            a for a in self.actions if a.kind not in ("skip", "link_copy", "unlink", "notify_organizer")
        )

    def explain(self) -> str:
        """E1: one line per action: rule, what, why."""
        return "\n".join(f"{a.rule} {a.kind}: {a.reason}" for a in self.actions)


@dataclass(frozen=True)
class Inputs:
    change: Change
    mapping: Mapping | None
    graph: GraphEvent | None
    crm: CrmRecord | None
    policy: Policy
    now: datetime
    facts: Facts
