"""What the worker reads before it asks the engine: the mapping, both sides' current state, and the facts.
I/O side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sync_core.domain import identity
from sync_core.domain.actions import Change, ChangeType, GraphCopy, Mapping
from sync_core.domain.messages import CRM_CHANGE_TYPES, CrmChange, GraphChange
from sync_core.domain.model import Appointment, CrmRecord, GraphEvent, Side
from sync_core.domain.policy import Policy
from sync_core.engine.inputs import Facts
from sync_core.engine.mapping_update import add_copy
from sync_core.engine.scope import write_target
from sync_core.ports.calendar import Calendar
from sync_core.ports.crm import CrmConnector
from sync_core.ports.stores import DeleteBudget, Mappings
from sync_core.service.attachments import with_attachments

_OCCURRENCE_SEARCH = timedelta(days=1)


@dataclass
class Gathered:
    change: Change
    meeting_key: str | None
    mapping: Mapping | None  # the stored row plus the copies this read found (room copies, our lost create)
    stored: Mapping | None  # the row exactly as stored: its ETag and index rows
    graph: GraphEvent | None
    crm: CrmRecord | None
    facts: Facts
    run_mailbox: str | None  # the mailbox whose X1 delete budget this change spends


class Gatherer:
    def __init__(
        self,
        *,
        graph: Calendar,
        crm: CrmConnector,
        mappings: Mappings,
        policy: Policy,
        budget: DeleteBudget | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.graph = graph
        self.crm = crm
        self.mappings = mappings
        self.policy = policy
        self.budget = budget
        self.clock = clock

    # -- a change in a Microsoft 365 mailbox ----------------------------------------------------------

    async def graph_change(self, msg: GraphChange) -> Gathered:
        change = Change(
            source=Side.M365,
            change_type=ChangeType(msg.change_type),
            item_id=msg.event_id,
            mailbox=msg.mailbox,
        )
        event = await self.graph.get_event(msg.mailbox, msg.event_id)
        series_key = await self._series_key(msg.mailbox, event)
        key, stored = await self._graph_mapping(msg, event, series_key)
        crm_id = stored.crm_id if stored else (identity.crm_id_from_key(key) if key else None)
        # A tagged event whose mapping save was lost names its CRM record in the tag: adopt it (I3).
        crm = await self.crm.get_appointment(crm_id) if crm_id else None
        if crm_id is None and stored is None and key and event and event.type not in identity.SERIES_TYPES:
            # I5: an unmapped meeting may have a CRM record linked to it before onboarding: adopt it.
            crm = await self.crm.find_by_external_ref(key)
        # A record about to be adopted may already belong to another meeting (I3/I5): the engine holds it.
        mapped_under = (
            await self.mappings.find_by_crm(crm.crm_id) if crm is not None and stored is None else None
        )
        # I3: a row claimed for a CRM create that a crash cut short (before the create, or after it and before
        # the save) has no CRM id: the engine makes the create again under the same idempotency key (the CRM
        # answers with the record it made), and S5 asks the attendees again, as for a meeting not mapped yet.
        claimed = stored is not None and stored.crm_id is None and stored.state == "active"
        overlaps: tuple[GraphEvent, ...] = ()
        room = self.policy.room(msg.mailbox)
        if event is not None and room is not None and room.mode == "crm_managed":
            overlaps = await self._room_overlaps(room.mailbox, event.appointment, exclude=event.ical_uid)
        facts = Facts(
            known_contacts=await self._known(event, None if claimed else stored),
            room_overlaps=overlaps,
            series_key=series_key,
            series_mapping=await self.mappings.get(series_key) if series_key else None,
            crm_mapped_under=mapped_under,
        )
        event = await with_attachments(self.graph, event, crm, self.policy)  # F5
        return Gathered(change, key, stored, stored, event, crm, facts, msg.mailbox)

    async def _graph_mapping(
        self, msg: GraphChange, event: GraphEvent | None, series_key: str | None
    ) -> tuple[str | None, Mapping | None]:
        """The meeting of a Graph copy and its row. A copy that still exists names its meeting's key itself
        (our tag, its iCalUId, or its series key plus original start), so one partition read finds the row or
        the alias to it (I1); a deleted copy is found by the mailbox's copy rows."""
        candidate = _candidate_key(event, series_key) if event is not None else None
        if event is not None and candidate is not None:
            stored, alias = await self.mappings.lookup(candidate, homes=self._homes(event))
            if stored is not None:
                return candidate, stored
            if alias is not None:
                return alias, await self.mappings.get(alias)
            if not event.is_organizer and event.ical_uid and not event.written_by_us:
                # an attendee or room copy of a meeting keyed otherwise, mapped before alias rows existed
                legacy = await self.mappings.find_by_ical(event.ical_uid)  # homes asked already
                if legacy is not None and legacy != candidate:
                    return legacy, await self.mappings.get(legacy)
            return candidate, None
        key = await self.mappings.find_by_graph(msg.mailbox, msg.event_id)
        if key is None and event is not None:
            key = await self._graph_key(event, series_key)
        return key, (await self.mappings.get(key) if key else None)

    async def _series_key(self, mailbox: str, event: GraphEvent | None) -> str | None:
        """I1/R3: the meeting key of the series an occurrence or exception belongs to."""
        if event is None or event.type not in identity.SERIES_TYPES or not event.series_master_id:
            return None
        known = await self.mappings.find_by_graph(mailbox, event.series_master_id)
        if known is not None:
            return known
        master = await self.graph.get_event(mailbox, event.series_master_id)
        if master is None:
            return None
        return master.written_by_us or await self._graph_key(master, None)

    async def _graph_key(self, event: GraphEvent, series_key: str | None) -> str | None:
        if event.written_by_us:
            return event.written_by_us
        if event.type in identity.SERIES_TYPES:
            return identity.meeting_key(event, series_key) if series_key else None
        found = await self.mappings.find_by_ical(event.ical_uid, homes=self._homes(event))
        return found or identity.meeting_key(event)

    def _homes(self, event: GraphEvent) -> tuple[str, ...]:
        """For an invitee's or a room's copy, the calendar of the meeting's own copy, where a meeting booked
        from the CRM is known by its iCalUId until another copy joins it (storage `home_ical_row`): the
        organizer's, when the organizer is one of ours. None for an organizer's copy: the meeting's own copy
        carries our tag, and asking would cost every new meeting a read."""
        organizer = event.appointment.organizer
        if event.is_organizer or organizer is None or not self.policy.is_internal(organizer.email):
            return ()
        user = self.policy.user_for_email(organizer.email)  # the address Graph shows, then the calendars
        return tuple(dict.fromkeys((organizer.email.lower(), *(user.all_mailboxes if user else ()))))

    async def _known(self, event: GraphEvent | None, mapping: Mapping | None) -> frozenset[str]:
        """S5: which attendees resolve to CRM contacts; only asked before the meeting is mapped."""
        if event is None or mapping is not None:
            return frozenset()
        emails = {a.email for a in event.appointment.attendees}
        if event.appointment.organizer:
            emails.add(event.appointment.organizer.email)
        return frozenset(await self.crm.find_contacts(sorted(emails))) if emails else frozenset()

    # -- a change of a CRM record ---------------------------------------------------------------------

    async def crm_change(self, msg: CrmChange) -> Gathered:
        change = Change(source=Side.CRM, change_type=CRM_CHANGE_TYPES[msg.change_type], item_id=msg.crm_id)
        record = await self.crm.get_appointment(msg.crm_id)
        key, stored = await self._crm_mapping(msg.crm_id, record)
        mapping = stored
        event: GraphEvent | None = None
        occurrence_id: str | None = None
        gone = False
        if mapping and mapping.graph_event_id:
            event, gone = await self._mapped_event(mapping)
        elif record is not None and key is not None:
            appt = record.appointment
            if mapping is None and appt.series_ref and appt.original_start is not None:
                event = await self._occurrence(appt.series_ref, appt.original_start)
                occurrence_id = event.event_id if event else None
            else:
                event = await self._our_lost_create(key, record, mapping)  # the engine links it (I3)
        facts_overlaps: list[GraphEvent] = []
        if record is not None and mapping is not None:
            mapping, facts_overlaps = await self._room_copies(record, mapping, event)
        run_mailbox = (mapping.organizer_mailbox if mapping else None) or (event.mailbox if event else None)
        facts = Facts(
            room_overlaps=tuple(facts_overlaps),
            occurrence_event_id=occurrence_id,
            series_key=record.appointment.series_ref if record else None,
            graph_gone=gone,
        )
        event = await with_attachments(self.graph, event, record, self.policy)  # F5
        return Gathered(change, key, mapping, stored, event, record, facts, run_mailbox)

    async def _crm_mapping(self, crm_id: str, record: CrmRecord | None) -> tuple[str | None, Mapping | None]:
        """The meeting of a CRM record and its row: the key the record names (our `external_ref`, its series
        and original start, or `crm:<id>`) read with one partition query that finds the row or the alias to
        it; a record that is gone, by its id's alias."""
        if record is not None:
            key = identity.crm_meeting_key(record)
            stored, alias = await self.mappings.lookup(key)
            if stored is not None:
                return key, stored
            if alias is not None:
                return alias, await self.mappings.get(alias)
            if key == "crm:" + crm_id:
                return key, None  # the row would be here, and no alias for this id exists
        found = await self.mappings.find_by_crm(crm_id)
        if found is None:
            return (identity.crm_meeting_key(record) if record is not None else None), None
        return found, await self.mappings.get(found)

    async def _mapped_event(self, mapping: Mapping) -> tuple[GraphEvent | None, bool]:
        """The M365 side of a mapped meeting, and whether Graph said it is gone: the organizer's event, or
        for a meeting we know only from invitees' copies (I2) the first copy that still exists. Gone only
        when every copy we map was read and Graph answered "not found": never because we did not look."""
        if mapping.organizer_mailbox and mapping.graph_event_id:
            event = await self.graph.get_event(mapping.organizer_mailbox, mapping.graph_event_id)
            return event, event is None
        copies = sorted(
            (c for c in mapping.copies if c.role != "room"),
            key=lambda c: c.event_id != mapping.graph_event_id,  # the primary copy first
        )
        for copy in copies:
            event = await self.graph.get_event(copy.mailbox, copy.event_id)
            if event is not None:
                return event, False
        return None, bool(copies)

    async def _occurrence(self, series_key: str, original_start: datetime) -> GraphEvent | None:
        """R3: the Graph occurrence a CRM-edited exception stands for: series master plus original start."""
        series = await self.mappings.get(series_key)
        if series is None or not series.organizer_mailbox or not series.graph_event_id:
            return None
        view = await self.graph.calendar_view(
            series.organizer_mailbox, original_start - _OCCURRENCE_SEARCH, original_start + _OCCURRENCE_SEARCH
        )
        for e in view:
            if (
                e.series_master_id == series.graph_event_id
                and e.original_start is not None
                and e.original_start.astimezone(UTC) == original_start.astimezone(UTC)
            ):
                return await self.graph.get_event(e.mailbox, e.event_id) or e
        return None

    async def _our_lost_create(
        self, key: str, record: CrmRecord, mapping: Mapping | None
    ) -> GraphEvent | None:
        """I3: an event we created whose mapping save never happened (a crash between the two) carries our
        tag; find it in the mailbox we write to, so the engine links it instead of creating a second one.
        Asked by the tag itself (`/events?$filter=` on our extended property: one short answer, series masters
        included), not by reading every event of the booking's time window, which costs the worker a parse
        per event of a busy organizer's calendar on every CRM create."""
        mailbox = mapping.organizer_mailbox if mapping and mapping.organizer_mailbox else None
        mailbox = mailbox or write_target(self.policy, record)[0]
        if mailbox is None:
            return None
        e = await self.graph.find_created(mailbox, tag=key, transaction_id=identity.transaction_id(key))
        if e is None or e.written_by_us != key or not e.is_organizer:
            return None
        return e if e.type in ("singleInstance", "seriesMaster") else None

    async def _room_copies(
        self, record: CrmRecord, mapping: Mapping, event: GraphEvent | None
    ) -> tuple[Mapping, list[GraphEvent]]:
        """M4: each CRM-managed room's copy of this meeting (found by iCalUId, so a room need not be
        subscribed) joins the mapping; the room's other invitations for the slot are the overlaps."""
        ical = (event.ical_uid if event else None) or mapping.ical_uid
        overlaps: list[GraphEvent] = []
        for attendee in record.appointment.rooms:
            room = self.policy.room(attendee.email)
            if room is None or room.mode != "crm_managed":
                continue
            for e in await self.graph.calendar_view(
                room.mailbox, record.appointment.start, record.appointment.end
            ):
                if ical and e.ical_uid == ical:
                    if not e.is_organizer:
                        mapping = add_copy(
                            mapping, GraphCopy(mailbox=room.mailbox, event_id=e.event_id, role="room")
                        )
                elif not e.is_cancelled:
                    overlaps.append(e)
        return mapping, overlaps

    async def _room_overlaps(self, room: str, appt: Appointment, *, exclude: str) -> tuple[GraphEvent, ...]:
        view = await self.graph.calendar_view(room, appt.start, appt.end)
        return tuple(e for e in view if e.ical_uid != exclude and not e.is_cancelled)


def _candidate_key(event: GraphEvent, series_key: str | None) -> str | None:
    """The meeting key a live Graph copy names by itself (I1): our verified tag, else its identity."""
    if event.written_by_us:
        return event.written_by_us
    if event.type in identity.SERIES_TYPES:
        return identity.meeting_key(event, series_key) if series_key else None
    return identity.meeting_key(event)
