"""What the CRM connectors read back from their sidecar column (the neutral fields a vendor has no field
for), the same way for each vendor. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_core.domain.model import Origin, Sensitivity


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
