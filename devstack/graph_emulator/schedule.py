"""Free/busy (calendar/getSchedule) and sendMail, stored for inspection through the admin API."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from devstack.graph_emulator import recurrence
from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.timezones import format_instant, format_local, parse_date_time_time_zone

SCHEDULE_TYPE = "microsoft.graph.scheduleInformation"
AVAILABILITY_CODE = {
    "free": "0",
    "tentative": "1",
    "busy": "2",
    "oof": "3",
    "workingElsewhere": "4",
    "unknown": "0",
}
# When several items overlap a slot, the most unavailable status wins.
_RANK = {"free": 0, "unknown": 0, "tentative": 1, "workingElsewhere": 2, "busy": 3, "oof": 4}


class ScheduleApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        self.state = svc.state
        for path in ("/users/{user}/calendar/getSchedule", "/users/{user}/calendar/getschedule"):
            svc.router.add("POST", path, self.get_schedule)
        svc.router.add("POST", "/users/{user}/sendMail", self.send_mail)

    def _busy_items(
        self, mailbox_id: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime, str, dict[str, Any]]]:
        items: list[tuple[datetime, datetime, str, dict[str, Any]]] = []
        for record in self.state.events[mailbox_id].values():
            if record.is_cancelled or record.response_status.get("response") == "declined":
                continue
            spans: list[tuple[datetime, datetime, dict[str, Any]]] = []
            if record.is_series:
                for key, s, e, _ in recurrence.instances(record.shape(), start, end):
                    exception = record.exceptions.get(key)
                    spans.append((s, e, {**record.fields, **(exception.fields if exception else {})}))
            elif recurrence.overlaps(record.start, record.end, start, end):
                spans.append((record.start, record.end, record.fields))
            for s, e, fields in spans:
                if fields["showAs"] != "free":
                    items.append((s, e, fields["showAs"], fields))
        items.sort(key=lambda item: item[0])
        return items

    async def get_schedule(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        self.state.mailbox(params["user"])
        # Action parameters are case-insensitive; msgraph-sdk sends "Schedules", "StartTime", ...
        body = {str(k).lower(): v for k, v in (req.body if isinstance(req.body, dict) else {}).items()}
        schedules = body.get("schedules")
        if not isinstance(schedules, list) or not schedules or not all(isinstance(s, str) for s in schedules):
            raise bad_request("schedules must be a non-empty array of SMTP addresses.")
        start, start_tz = parse_date_time_time_zone(body.get("starttime"), "startTime")
        end, _ = parse_date_time_time_zone(body.get("endtime"), "endTime")
        if end <= start:
            raise bad_request("endTime must be after startTime.")
        interval = int(body.get("availabilityviewinterval") or 30)
        if not 5 <= interval <= 1440:
            raise bad_request("availabilityViewInterval must be between 5 and 1440 minutes.")
        ctx, headers = self.svc.render_context(req)
        values: list[dict[str, Any]] = []
        with self.state.lock:
            for address in schedules:
                mailbox = self.state.find_mailbox(address)
                if mailbox is None:
                    values.append(
                        {
                            "scheduleId": address,
                            "error": {
                                "message": f"The user '{address}' couldn't be found.",
                                "responseCode": "ErrorMailRecipientNotFound",
                            },
                        }
                    )
                    continue
                items = self._busy_items(mailbox.id, start, end)
                slots = math.ceil((end - start) / timedelta(minutes=interval))
                view = ""
                for slot in range(slots):
                    slot_start = start + timedelta(minutes=interval * slot)
                    slot_end = slot_start + timedelta(minutes=interval)
                    statuses = [st for s, e, st, _ in items if s < slot_end and e > slot_start]
                    view += AVAILABILITY_CODE[max(statuses, key=_RANK.__getitem__)] if statuses else "0"
                values.append(
                    {
                        "scheduleId": address,
                        "availabilityView": view,
                        "scheduleItems": [
                            {
                                "isPrivate": fields["sensitivity"] in ("private", "confidential"),
                                "status": status,
                                "subject": fields["subject"],
                                "location": fields["location"].get("displayName", ""),
                                "start": format_local(s, ctx.tz),
                                "end": format_local(e, ctx.tz),
                            }
                            for s, e, status, fields in items
                        ],
                        "workingHours": {
                            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                            "startTime": "08:00:00.0000000",
                            "endTime": "17:00:00.0000000",
                            "timeZone": {"name": mailbox.time_zone or start_tz},
                        },
                    }
                )
        return GraphResponse(
            200,
            {
                "@odata.context": f"{self.svc.base_url}/$metadata#Collection({SCHEDULE_TYPE})",
                "value": values,
            },
            headers,
        )

    async def send_mail(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        body = {str(k).lower(): v for k, v in (req.body if isinstance(req.body, dict) else {}).items()}
        message = body.get("message")
        if not isinstance(message, dict):
            raise bad_request("sendMail needs a message.", code="ErrorInvalidRequest")
        if (
            not message.get("toRecipients")
            and not message.get("ccRecipients")
            and not message.get("bccRecipients")
        ):
            raise bad_request(
                "At least one recipient is required, but none were found.", code="ErrorInvalidRecipients"
            )
        with self.state.lock:
            self.state.sent_mail.append(
                {
                    "from": mailbox.mail,
                    "mailbox_id": mailbox.id,
                    "message": message,
                    "saveToSentItems": body.get("savetosentitems", True),
                    "time": format_instant(self.svc.clock.now()),
                }
            )
        return GraphResponse(202)
