"""The sidecar column of the CRM connectors: the neutral fields a vendor has no field for, written and read
back the same way for each vendor (version 1, JSON). No I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sync_core.domain.model import Appointment, Origin, Sensitivity


def written(appt: Appointment, location_text: str) -> dict[str, Any]:
    """What the sidecar keeps of `appt`; `location_text` is what the vendor's location field holds, so a
    read knows whether a CRM user changed it."""
    dumped = appt.model_dump(mode="json")
    people = {
        a.email: {"name": a.name, "type": a.type.value, "response": a.response.value} for a in appt.attendees
    }
    return {
        "v": 1,
        "time_zone": appt.time_zone,
        "reminder_minutes": appt.reminder_minutes,
        "categories": list(appt.categories),
        "online_meeting_url": appt.online_meeting_url,
        "attachments": dumped["attachments"],
        "sensitivity": appt.sensitivity.value,
        "show_as": appt.show_as.value,
        "kind": appt.kind.value,
        "origin": appt.origin.value,
        "organizer": dumped["organizer"],
        "people": people,
        "order": [a.email for a in appt.attendees],
        "locations": dumped["locations"],
        "location_text": location_text,
        "cancelled_occurrences": dumped["cancelled_occurrences"],
        "recurrence": dumped["recurrence"],
        "series_ref": appt.series_ref,
        "original_start": dumped["original_start"],
        "crm_fields": dumped["crm_fields"],
    }


def load(raw: Any) -> dict[str, Any]:
    """The sidecar read back; empty when there is none or it is not ours (a CRM user or an import broke it:
    the native fields alone then)."""
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("v") == 1 else {}


def kept_fields(kept: Mapping[str, Any]) -> dict[str, Any]:
    """The appointment fields only the sidecar holds, as `Appointment.model_validate` takes them."""
    return {
        "reminder_minutes": kept.get("reminder_minutes"),
        "categories": tuple(kept.get("categories") or ()),
        "online_meeting_url": kept.get("online_meeting_url"),
        "attachments": tuple(kept.get("attachments") or ()),
        "kind": kept.get("kind", "meeting"),
        "origin": kept.get("origin", Origin.CRM.value),
        "series_ref": kept.get("series_ref"),
        "original_start": kept.get("original_start"),
        "crm_fields": tuple(tuple(x) for x in kept.get("crm_fields") or ()),
    }


def sensitivity(kept: Mapping[str, Any], private: bool) -> Sensitivity:
    """The native private flag wins: private when it is set, and never private when it is not; what the
    sidecar kept tells normal, personal and confidential apart."""
    kept_value = Sensitivity(kept.get("sensitivity", Sensitivity.NORMAL.value))
    if private:
        return Sensitivity.PRIVATE
    if kept_value is Sensitivity.PRIVATE:
        return Sensitivity.NORMAL
    return kept_value
