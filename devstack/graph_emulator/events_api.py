"""Graph routes for /users/{id}/events: CRUD, meeting responses, cancel, instances."""

from __future__ import annotations

from typing import Any

from devstack.graph_emulator import ids, meetings, recurrence
from devstack.graph_emulator.errors import GraphError, bad_request, not_found
from devstack.graph_emulator.events import build_event, original_times, patch_event, patch_occurrence
from devstack.graph_emulator.fields import MEETING_FIELDS
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.query import compile_filter
from devstack.graph_emulator.rendering import ext_values, render_event
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.state import EventRecord
from devstack.graph_emulator.views import page_links, page_size, parse_window

RESPONSES = {"accept": "accepted", "tentativelyaccept": "tentativelyAccepted", "decline": "declined"}
TIME_KEYS = ("start", "end", "recurrence")


class EventsApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        self.state = svc.state
        for prefix in ("/users/{user}/events", "/users/{user}/calendar/events"):
            svc.router.add("POST", prefix, self.create)
            svc.router.add("GET", prefix, self.list)
            svc.router.add("GET", prefix + "/{event}", self.get)
            svc.router.add("PATCH", prefix + "/{event}", self.patch)
            svc.router.add("DELETE", prefix + "/{event}", self.delete)
            svc.router.add("GET", prefix + "/{event}/instances", self.instances)
            svc.router.add("POST", prefix + "/{event}/cancel", self.cancel)
            for action in ("accept", "tentativelyAccept", "decline"):
                svc.router.add("POST", f"{prefix}/{{event}}/{action}", self.respond)

    def resolve(self, mailbox_id: str, event_id: str) -> tuple[EventRecord, str | None]:
        """(stored record, occurrence key or None); 404 ErrorItemNotFound when absent."""
        with self.state.lock:
            record = self.state.events[mailbox_id].get(event_id)
            if record is not None:
                return record, None
            parsed = ids.parse_occurrence_id(event_id)
            if parsed is not None:
                master = self.state.events[mailbox_id].get(parsed[0])
                key = parsed[1].isoformat()
                if (
                    master is not None
                    and master.is_series
                    and key not in master.cancelled
                    and recurrence.has_occurrence(master.shape(), key)
                ):
                    return master, key
        raise not_found()

    def _render_one(
        self, req: GraphRequest, record: EventRecord, key: str | None, status: int = 200
    ) -> GraphResponse:
        ctx, headers = self.svc.render_context(req)
        times = None
        if key is not None:
            exception = record.exceptions.get(key)
            times = (exception.start, exception.end) if exception else original_times(record, key)
        body = {
            "@odata.context": f"{self.svc.base_url}/$metadata#users('{record.mailbox_id}')/events/$entity",
            **render_event(record, ctx, occurrence_key=key, occurrence_times=times),
        }
        return GraphResponse(status, body, headers)

    async def create(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        with self.state.lock:
            record = build_event(self.state, mailbox, req.body)
            if record.transaction_id is not None:
                # Documented: a retried POST with the same transactionId makes no duplicate. What it answers
                # is not: the existing event by default, or the error Graph has been seen to return.
                for existing in self.state.events[mailbox.id].values():
                    if existing.transaction_id == record.transaction_id:
                        status = self.svc.faults.duplicate_transaction_status(mailbox.id)
                        if status:
                            raise GraphError(
                                status,
                                "ErrorDuplicateTransactionId",
                                "Your request can't be completed. The TransactionId specified in the "
                                "request has already been used to create a different event.",
                            )
                        return self._render_one(req, existing, None, 201)
            self.state.store(record)
            self.state.touch(record, new_change_key=False)
            self.state.publish(mailbox.id, record.id, "created", record.etag)
            if record.fields["attendees"]:
                meetings.sync_copies(self.state, record, reset_responses=True)
            return self._render_one(req, record, None, 201)

    async def get(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            return self._render_one(req, record, key)

    async def list(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        ctx, headers = self.svc.render_context(req)
        matches = compile_filter(req.param("$filter"))
        top = page_size(req, default=10)
        skip = int(req.param("$skip") or 0)
        with self.state.lock:
            records = sorted(self.state.events[mailbox.id].values(), key=lambda r: (r.created, r.id))
            rendered = [render_event(r, ctx) for r in records]
            selected = [ev for ev, r in zip(rendered, records, strict=True) if matches(ev, ext_values(r))]
        page = selected[skip : skip + top]
        body: dict[str, Any] = {
            "@odata.context": f"{self.svc.base_url}/$metadata#users('{mailbox.id}')/events"
        }
        if skip + top < len(selected):
            body["@odata.nextLink"] = page_links(self.svc, req, {"$skip": str(skip + top), "$top": str(top)})
        body["value"] = page
        return GraphResponse(200, body, headers)

    async def patch(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            if key is not None:
                patch_occurrence(self.state, record, key, req.body)
                self.state.touch(record)
                self.state.publish(mailbox.id, record.id, "updated", record.etag)
                self._propagate_series(record)
                return self._render_one(req, record, key)
            before = (record.start, record.end, record.fields.get("recurrence"))
            changed = patch_event(self.state, record, req.body)
            self.state.touch(record)
            self.state.publish(mailbox.id, record.id, "updated", record.etag)
            if record.is_organizer and (record.copies or record.fields["attendees"]):
                moved = before != (record.start, record.end, record.fields.get("recurrence"))
                if changed & (set(MEETING_FIELDS) | set(TIME_KEYS)):
                    meetings.sync_copies(self.state, record, reset_responses=moved)
            return self._render_one(req, record, None)

    def _propagate_series(self, master: EventRecord) -> None:
        if master.is_organizer and master.copies:
            meetings.sync_copies(self.state, master, reset_responses=False)

    async def delete(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            if key is not None:
                record.cancelled[key] = self.state.next_seq()
                record.exceptions.pop(key, None)
                self.state.touch(record)
                self.state.publish(mailbox.id, record.id, "updated", record.etag)
                self._propagate_series(record)
                return GraphResponse(204)
            self._delete_record(record)
        return GraphResponse(204)

    def _delete_record(self, record: EventRecord) -> None:
        # Graph: deleting a meeting on the organiser's calendar sends a cancellation to attendees.
        if record.is_organizer:
            meetings.cancel_copies(self.state, record)
        self.state.remove(record)
        self.state.publish(record.mailbox_id, record.id, "deleted", record.etag)

    async def cancel(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            if not record.is_organizer:
                raise bad_request(
                    "Your request can't be completed. You need to be an organizer to cancel a meeting."
                )
            if key is not None:
                record.cancelled[key] = self.state.next_seq()
                record.exceptions.pop(key, None)
                self.state.touch(record)
                self.state.publish(mailbox.id, record.id, "updated", record.etag)
                self._propagate_series(record)
            else:
                # The event moves to Deleted Items: gone from the calendar.
                self._delete_record(record)
        return GraphResponse(202)

    async def respond(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        action = req.path.rstrip("/").rsplit("/", 1)[-1].lower()
        body = {str(k).lower(): v for k, v in (req.body if isinstance(req.body, dict) else {}).items()}
        send_response = body.get("sendresponse")
        send_response = True if send_response is None else send_response
        if not isinstance(send_response, bool):
            raise bad_request("The property 'sendResponse' must be a boolean.")
        proposed = body.get("proposednewtime")
        # event-tentativelyaccept.md / event-decline.md: 400 when proposedNewTime comes with sendResponse
        # false, or for an event whose allowNewTimeProposals is false.
        if proposed is not None:
            if not isinstance(proposed, dict) or "start" not in proposed or "end" not in proposed:
                raise bad_request(
                    "The parameter 'proposedNewTime' must be a timeSlot with a start and an end."
                )
            if not send_response:
                raise bad_request("A proposedNewTime can only be sent with sendResponse set to true.")
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            if proposed is not None and not record.fields.get("allowNewTimeProposals", True):
                raise bad_request("The organizer of this meeting does not allow new time proposals.")
            if record.is_organizer:
                raise bad_request(
                    "Your request can't be completed. You can't respond to a meeting you organized."
                )
            if record.is_cancelled:
                raise bad_request("Your request can't be completed. The meeting was canceled.")
            meetings.respond(
                self.state, record, RESPONSES[action], send_response=send_response, occurrence_key=key
            )
        return GraphResponse(202)

    async def instances(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        window_start, window_end = parse_window(req)
        ctx, headers = self.svc.render_context(req)
        with self.state.lock:
            record, key = self.resolve(mailbox.id, params["event"])
            if key is not None:
                raise GraphError(
                    400, "ErrorInvalidRequest", "Instances can only be listed for a series master."
                )
            values: list[dict[str, Any]] = []
            if record.is_series:
                for occ_key, start, end, _ in recurrence.instances(record.shape(), window_start, window_end):
                    values.append(
                        render_event(record, ctx, occurrence_key=occ_key, occurrence_times=(start, end))
                    )
            elif recurrence.overlaps(record.start, record.end, window_start, window_end):
                values.append(render_event(record, ctx))
        top = page_size(req, default=10)
        skip = int(req.param("$skip") or 0)
        body: dict[str, Any] = {"@odata.context": f"{self.svc.base_url}/$metadata#Collection(event)"}
        if skip + top < len(values):
            body["@odata.nextLink"] = page_links(self.svc, req, {"$skip": str(skip + top), "$top": str(top)})
        body["value"] = values[skip : skip + top]
        return GraphResponse(200, body, headers)
