"""Reconciliation: find every change the notifications missed, through calendarView/delta (X2, X3, I5, S6).
I/O side.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync_core.adapters.graph.adapter import DeltaPage
from sync_core.adapters.storage.core import call, create_entity, get_entity, key_of, translate
from sync_core.domain.actions import Mapping
from sync_core.domain.messages import GraphChange, MailboxResync, SubscriptionLifecycle, encode
from sync_core.domain.model import GraphEvent
from sync_core.domain.policy import Policy
from sync_core.errors import ConcurrencyError, NotFoundError, PermanentError, ThrottledError
from sync_core.ingress.graph import NOTIFICATION_TOUCH_INTERVAL
from sync_core.ports.subscriptions import Lease

log = logging.getLogger("sync_core.reconcile")

_MAILBOX_PK = "mailbox"
MAX_PAGES = 10_000
ROLL = timedelta(days=30)  # how far the delta window reaches beyond the policy window
SWEEP_REASON = "sweep"
SERIES_RECHECK_MAX = 200  # R3: series re-read after a round removed ids no mapping knows
ENDED_LOOKBACK = timedelta(days=1)  # L5: how far back a sweep looks for meetings that ended
ENDED_MAX = 500  # L5: hints per mailbox per sweep (no calendar ends more meetings in one hour)
SUBSCRIBED, POLLING = "subscribed", "polling"
RESYNC_HOLD = timedelta(minutes=11)  # outlives a round (the function timeout is 10 minutes), then lapses
# A resync that finds its mailbox busy comes back after half the time it has waited so far, within these
# bounds: soon after a short round, rarely during a long backfill (each return is one throttle round).
RESYNC_BUSY_MIN_SECONDS, RESYNC_BUSY_MAX_SECONDS = 2.0, 60.0


@dataclass
class MailboxState:
    mailbox: str
    delta_link: str | None = None
    window_start: datetime | None = None  # the window the delta link is bound to
    window_end: datetime | None = None
    last_confirmed: datetime | None = None  # freshness: when a delta round last completed (X2)
    last_full: datetime | None = None  # when the last full round that completed began
    etag: str | None = None
    scanned_end: datetime | None = None  # the policy window's end the last round covered (S6)
    last_sweep: datetime | None = None
    last_notification: datetime | None = None  # written by the ingress only
    status: str = SUBSCRIBED  # subscribed | polling (X3), written by the subscription manager only
    status_reason: str = ""
    silent_since: datetime | None = None  # X2: a sweep found changes no notification announced
    silent_sweeps: int = 0
    last_found: int = 0


def _iso(v: datetime | None) -> str:
    return v.astimezone(UTC).isoformat() if v else ""


def _dt(e: dict[str, Any], name: str) -> datetime | None:
    v = e.get(name)
    return datetime.fromisoformat(v) if v else None


class MailboxStateStore:
    """SyncMailboxes: one row per mailbox. Each writer merges only the columns it owns, so the ingress's
    notification times, the manager's polling status and the reconciler's delta state never clobber."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, mailbox: str) -> MailboxState:
        e = await get_entity(self._table, _MAILBOX_PK, key_of(mailbox.lower()))
        if e is None:
            return MailboxState(mailbox=mailbox)
        return MailboxState(
            mailbox=str(e.get("Mailbox") or mailbox),
            delta_link=str(e.get("DeltaLink") or "") or None,
            window_start=_dt(e, "WindowStart"),
            window_end=_dt(e, "WindowEnd"),
            last_confirmed=_dt(e, "LastConfirmed"),
            last_full=_dt(e, "LastFull"),
            etag=e["_etag"],
            scanned_end=_dt(e, "ScannedEnd"),
            last_sweep=_dt(e, "LastSweep"),
            last_notification=_dt(e, "LastNotification"),
            status=str(e.get("Status") or SUBSCRIBED),
            status_reason=str(e.get("StatusReason") or ""),
            silent_since=_dt(e, "SilentSince"),
            silent_sweeps=int(e.get("SilentSweeps") or 0),
            last_found=int(e.get("LastFound") or 0),
        )

    async def last_confirmed_all(self) -> dict[str, datetime | None]:
        """Every mailbox's "last confirmed in sync", by lower-cased mailbox: one query of the partition,
        two columns (the status page and gauges; a read per mailbox would be thousands of requests)."""
        out: dict[str, datetime | None] = {}
        flt, cols = "PartitionKey eq @pk", ["Mailbox", "LastConfirmed"]
        try:
            async for e in self._table.query_entities(flt, parameters={"pk": _MAILBOX_PK}, select=cols):
                out[str(e.get("Mailbox") or "").lower()] = _dt(e, "LastConfirmed")
        except Exception as exc:
            raise translate(exc) from exc
        return out

    async def _merge(self, mailbox: str, fields: dict[str, Any], *, if_unchanged: str | None = None) -> None:
        """Merge `fields`; `if_unchanged`: only if the row's ETag is still this ("*": only if it is new)."""
        entity = {"PartitionKey": _MAILBOX_PK, "RowKey": key_of(mailbox.lower()), "Mailbox": mailbox} | fields
        if if_unchanged == "*":
            await create_entity(self._table, entity)
        elif if_unchanged is not None:
            etag = if_unchanged
            await call(
                lambda: self._table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
                ),
                item_id=mailbox,
            )
        else:
            await call(lambda: self._table.upsert_entity(entity, mode=UpdateMode.MERGE), item_id=mailbox)

    async def save(self, state: MailboxState, *, if_unchanged: bool = False) -> None:
        """The reconciler's columns: delta state, freshness, X2 flags. `if_unchanged`: only if the row is as
        `state` was read (its ETag; none: the row did not exist), else ConcurrencyError."""
        await self._merge(
            state.mailbox,
            {
                "DeltaLink": state.delta_link or "",
                "WindowStart": _iso(state.window_start),
                "WindowEnd": _iso(state.window_end),
                "ScannedEnd": _iso(state.scanned_end),
                "LastConfirmed": _iso(state.last_confirmed),
                "LastFull": _iso(state.last_full),
                "LastSweep": _iso(state.last_sweep),
                "SilentSince": _iso(state.silent_since),
                "SilentSweeps": state.silent_sweeps,
                "LastFound": state.last_found,
            },
            if_unchanged=(state.etag or "*") if if_unchanged else None,
        )

    async def set_status(self, mailbox: str, status: str, reason: str = "") -> None:
        """X3: `polling` when Graph refuses the mailbox a subscription, `subscribed` once it has one."""
        await self._merge(mailbox, {"Status": status, "StatusReason": reason[:1000]})

    async def touch_notification(self, mailbox: str, at: datetime) -> None:
        await self._merge(mailbox, {"LastNotification": _iso(at)})


class MailboxStates(Protocol):
    async def get(self, mailbox: str) -> MailboxState: ...
    async def save(self, state: MailboxState, *, if_unchanged: bool = False) -> None: ...


class MappedCopies(Protocol):
    """What the reconciler reads of the mappings (MappingStore): a mailbox's mapped copies, a meeting."""

    async def copies_in(self, mailbox: str) -> list[tuple[str, str]]: ...
    async def get(self, meeting_key: str) -> Mapping | None: ...


class DeltaSource(Protocol):
    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage: ...

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]: ...


def policy_window(policy: Policy, now: datetime) -> tuple[datetime, datetime]:
    """The days the policy syncs (S6), whole UTC days, a superset of the engine's own check."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=policy.past_days), day + timedelta(days=policy.future_days + 1)


def delta_window(
    state: MailboxState, wanted: tuple[datetime, datetime], full: bool
) -> tuple[datetime, datetime, bool]:
    """(start, end, fresh): keep the stored round while its window covers the policy's, else start anew."""
    start, end = wanted
    covered = (
        state.delta_link is not None
        and state.window_start is not None
        and state.window_end is not None
        and state.window_start <= start
        and state.window_end >= end
    )
    if covered and not full:
        assert state.window_start is not None and state.window_end is not None
        return state.window_start, state.window_end, False
    return start, end + ROLL, True


def in_window(mapping: Mapping, start: datetime, end: datetime) -> bool:
    """Whether the meeting as last synced has an instance in [start, end) (a series: any occurrence may).

    Pure. Without a snapshot nothing is known: True (the check is a read, never a write)."""
    appt = mapping.snapshot
    if appt is None:
        return True
    if appt.recurrence is None:
        return appt.start < end and appt.end > start
    rng = appt.recurrence.range
    last = rng.end_date if rng.type == "endDate" else None  # numbered: its end is not worked out here
    return appt.start < end and (last is None or last >= (start - timedelta(days=1)).date())


def silent(state: MailboxState, found: int, fresh: bool) -> bool:
    """X2: an incremental round found changes, yet no notification arrived since the previous round."""
    if fresh or found == 0 or state.status == POLLING or state.last_confirmed is None:
        return False
    heard = state.last_notification
    return heard is None or heard < state.last_confirmed - NOTIFICATION_TOUCH_INTERVAL


class Reconciler:
    """Runs delta for one mailbox and enqueues what it finds."""

    def __init__(
        self,
        *,
        graph: DeltaSource,
        states: MailboxStates,
        policy: Policy,
        enqueue: Callable[[str], Awaitable[None]],
        clock: Callable[[], datetime],
        mappings: MappedCopies,
        lease: Callable[[str], Lease] | None = None,
    ) -> None:
        self._graph = graph
        self._lease = lease
        self._states = states
        self._policy = policy
        self._enqueue = enqueue
        self._clock = clock
        self._mappings = mappings

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        return policy_window(self._policy, now)

    async def resync_mailbox(self, message: MailboxResync) -> int:
        """One delta round of the mailbox (and the slice entering its window); returns items enqueued.

        Rounds of one mailbox run one at a time (its resync lease; a busy mailbox's message comes back
        later, as throttled), and a request that a round begun after it already answered costs nothing:
        a burst of `missed` lifecycle events, forged or real, is one full resync, not one per message."""
        lease = self._lease(message.mailbox) if self._lease is not None else None
        if lease is not None and not await lease.acquire(self._clock(), RESYNC_HOLD):
            waited = (self._clock() - message.received_at).total_seconds()
            raise ThrottledError(
                f"a resync of {message.mailbox} is running; this one waits for it",
                retry_after=min(RESYNC_BUSY_MAX_SECONDS, max(RESYNC_BUSY_MIN_SECONDS, waited / 2)),
                side="storage",
                mailbox=message.mailbox,
            )
        try:
            return await self._resync(message)
        finally:
            if lease is not None:
                await lease.release()

    async def _resync(self, message: MailboxResync) -> int:
        now = self._clock()
        state = await self._states.get(message.mailbox)
        covered = state.last_full if message.full else state.last_confirmed
        sweep = message.reason.startswith(SWEEP_REASON)  # X2 counts every sweep: never coalesced
        if not sweep and covered is not None and covered >= message.received_at:
            log.info(
                "%s of %s already answered by the round begun %s: nothing to do",
                message.reason,
                message.mailbox,
                _iso(covered),
            )
            return 0
        read = (state.last_confirmed, state.delta_link)  # what another round's save would have changed
        wanted = self.window(now)
        start, end, fresh = delta_window(state, wanted, message.full)
        seen: set[str] = set()
        try:
            found, delta_link = await self._round(
                message, None if fresh else state.delta_link, start, end, seen=seen
            )
        except NotFoundError:
            log.warning("delta state for %s is gone (410/syncStateNotFound); full resync", message.mailbox)
            start, end, fresh = delta_window(state, wanted, True)
            seen.clear()
            found, delta_link = await self._round(message, None, start, end, seen=seen)
        if fresh:
            found += await self._check_unseen(message, seen, start, end)
        if not fresh and state.scanned_end is not None and state.scanned_end < wanted[1]:
            # S6: events entering the policy window, changed or not (the delta round only shows changes).
            found += (await self._round(message, None, state.scanned_end, wanted[1], entering=True))[0]
        if sweep:
            # L5: no notification comes when time passes; meetings that ended since the last sweep become
            # activities now (their count is not a change anyone missed: kept out of the X2 check).
            await self._ended(message, state.last_sweep, now)
        was_silent = message.reason.startswith(SWEEP_REASON) and silent(state, found, fresh)
        if was_silent:
            state.silent_since = state.silent_since or state.last_confirmed
            state.silent_sweeps += 1
            log.warning(
                "X2: %s had %d change(s) since %s that no notification announced; checking its subscription",
                message.mailbox,
                found,
                _iso(state.last_confirmed),
            )
            await self._enqueue(encode(self._silent(message)))
        elif found and not fresh and message.reason.startswith(SWEEP_REASON):
            state.silent_since, state.silent_sweeps = None, 0
        state.delta_link = delta_link
        state.window_start, state.window_end = start, end
        state.scanned_end = wanted[1]
        state.last_confirmed = now
        if fresh:
            state.last_full = now
        state.last_found = found
        if message.reason.startswith(SWEEP_REASON):
            state.last_sweep = now
        if not await self._save(state, read, sweep=now if message.reason.startswith(SWEEP_REASON) else None):
            log.info(
                "%s: another round of %s saved first; its state is kept", message.reason, message.mailbox
            )
            return found
        log.info(
            "resync of %s (%s, fresh=%s): %d items enqueued", message.mailbox, message.reason, fresh, found
        )
        return found

    async def _save(
        self, state: MailboxState, read: tuple[datetime | None, str | None], *, sweep: datetime | None
    ) -> bool:
        """Save the round's state only over the row it read (If-Match). A row changed since by another round
        (sweep, poll, lifecycle resync: its LastConfirmed or DeltaLink moved) is left as that round saved it
        (False): what this round found is queued already, so nothing is lost (at worst the next round sees
        some of it again); its X2 check, if any, is queued too. A sweep still records that it swept (`sweep`:
        LastSweep on that row, nothing else). A row changed only in the columns of other writers (the
        ingress's LastNotification, the manager's Status) is merged again."""
        for _ in range(5):
            try:
                await self._states.save(state, if_unchanged=True)
                return True
            except ConcurrencyError:
                current = await self._states.get(state.mailbox)
                if (current.last_confirmed, current.delta_link) != read:
                    if sweep is not None and (current.last_sweep is None or current.last_sweep < sweep):
                        current.last_sweep = sweep
                        await self._save(current, (current.last_confirmed, current.delta_link), sweep=None)
                    return False
                state.etag = current.etag
        raise ConcurrencyError("the mailbox row kept changing", side="storage", mailbox=state.mailbox)

    async def _round(
        self,
        message: MailboxResync,
        link: str | None,
        start: datetime,
        end: datetime,
        *,
        entering: bool = False,
        seen: set[str] | None = None,
    ) -> tuple[int, str | None]:
        found = 0
        seen = set() if seen is None else seen
        removed_ids: list[str] = []
        for _ in range(MAX_PAGES):
            page = await self._graph.delta_page(message.mailbox, link=link, start=start, end=end)
            for event in page.events:
                found += 1
                seen.add(event.event_id)
                if event.series_master_id:  # an occurrence shows its series is still there
                    seen.add(event.series_master_id)
                await self._enqueue(self._change(message, event.event_id, "updated"))
            for removed in [] if entering else page.removed_ids:
                found += 1
                seen.add(removed)
                removed_ids.append(removed)
                await self._enqueue(self._change(message, removed, "deleted"))
            if page.next_link:
                link = page.next_link
                continue
            found += await self._series_of_removed(message, removed_ids)
            return found, page.delta_link
        # Not a lost delta token (NotFoundError would restart the round forever): give up with the reason.
        raise PermanentError(
            f"delta did not end within {MAX_PAGES} pages", side="graph", mailbox=message.mailbox
        )

    async def _series_of_removed(self, message: MailboxResync, removed: list[str]) -> int:
        """R3: delta names a deleted occurrence by its own id, which no mapping knows (a series is mapped by
        its master) and which says nothing of its series. When a round removed ids we do not map, each live
        series mapped in the mailbox goes to the worker as an `updated` hint: it reads the master with its
        cancelled occurrences. Bounded (SERIES_RECHECK_MAX), and only after such a removal."""
        if not removed:
            return 0
        mapped = await self._mappings.copies_in(message.mailbox)
        known = {event_id for event_id, _ in mapped}
        if all(r in known for r in removed):
            return 0
        hinted = 0
        for event_id, meeting_key in mapped:
            if hinted >= SERIES_RECHECK_MAX:
                break
            mapping = await self._mappings.get(meeting_key)
            if (
                mapping is not None
                and mapping.state == "active"
                and mapping.graph_event_id == event_id
                and mapping.snapshot is not None
                and mapping.snapshot.recurrence is not None
            ):
                await self._enqueue(self._change(message, event_id, "updated"))
                hinted += 1
        return hinted

    async def _check_unseen(
        self, message: MailboxResync, seen: set[str], start: datetime, end: datetime
    ) -> int:
        """After a full round: each live mapped copy of the mailbox inside the window that the round did not
        return (deleted while its notification was lost) goes to the worker as a `deleted` hint."""
        checked = 0
        for event_id, meeting_key in await self._mappings.copies_in(message.mailbox):
            if event_id in seen:
                continue
            mapping = await self._mappings.get(meeting_key)
            if mapping is None or mapping.state != "active" or not in_window(mapping, start, end):
                continue
            mailbox = message.mailbox.lower()
            if not any(c.event_id == event_id and c.mailbox.lower() == mailbox for c in mapping.copies):
                continue  # no longer a copy of this meeting (I2 removed it)
            checked += 1
            await self._enqueue(self._change(message, event_id, "deleted"))
        if checked:
            log.warning(
                "%s: %d mapped event(s) in the window missing from a full delta round; checking them",
                message.mailbox,
                checked,
            )
        return checked

    async def _ended(self, message: MailboxResync, since: datetime | None, now: datetime) -> int:
        """L5: each mapped meeting of the mailbox that ended in (since, now] goes to the worker as an
        `updated` hint, which decides its kind again (an activity now). One calendarView and one partition
        read; a series counts by its master. Bounded: at most ENDED_LOOKBACK back, ENDED_MAX hints a run;
        idempotent: a meeting already an activity is a no-op (W4)."""
        start = max(since or now - ENDED_LOOKBACK, now - ENDED_LOOKBACK)
        if start >= now:
            return 0
        # calendarView takes whole seconds and refuses an empty window: ask for the whole seconds around.
        first, last = start.replace(microsecond=0), now.replace(microsecond=0) + timedelta(seconds=1)
        ended: list[str] = []
        for e in await self._graph.calendar_view(message.mailbox, first, last):
            if start < e.appointment.end <= now and not e.is_cancelled:
                ended += [i for i in (e.event_id, e.series_master_id) if i]
        if not ended:
            return 0
        mapped = {event_id for event_id, _ in await self._mappings.copies_in(message.mailbox)}
        due = [i for i in dict.fromkeys(ended) if i in mapped][:ENDED_MAX]
        for event_id in due:
            await self._enqueue(self._change(message, event_id, "updated"))
        if due:
            log.info("L5: %d meeting(s) of %s ended since %s", len(due), message.mailbox, _iso(start))
        return len(due)

    def _change(self, message: MailboxResync, event_id: str, change_type: str) -> str:
        return encode(
            GraphChange.model_validate(
                {
                    "correlation_id": f"{message.correlation_id[:40]}-{uuid.uuid4().hex[:8]}",
                    "received_at": self._clock(),
                    "mailbox": message.mailbox,
                    "event_id": event_id,
                    "change_type": change_type,
                }
            )
        )

    def _silent(self, message: MailboxResync) -> SubscriptionLifecycle:
        return SubscriptionLifecycle(
            correlation_id=f"x2-{uuid.uuid4().hex[:16]}",
            received_at=self._clock(),
            mailbox=message.mailbox,
            subscription_id=None,
            event="silent",
        )
