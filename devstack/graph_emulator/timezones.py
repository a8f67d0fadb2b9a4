"""Time parsing and formatting in Graph's wire forms, with Windows time-zone names mapped to IANA."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devstack.graph_emulator.errors import GraphError

# The Windows zone names Outlook uses most (CLDR windowsZones "001" territory).
WINDOWS_TO_IANA: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Calcutta",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "E. Australia Standard Time": "Australia/Brisbane",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "Newfoundland Standard Time": "America/St_Johns",
    "SA Pacific Standard Time": "America/Bogota",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Mexico Standard Time": "America/Mexico_City",
    "Central America Standard Time": "America/Guatemala",
}

_FRACTION = re.compile(r"\.(\d+)")


def zone(name: str | None) -> tzinfo:
    """The tzinfo for a Windows or IANA zone name; 400 TimeZoneNotSupportedException if unknown."""
    if not name or name.upper() == "UTC":
        return UTC
    iana = WINDOWS_TO_IANA.get(name, name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(
            400, "TimeZoneNotSupportedException", f"A valid TimeZone value must be specified. '{name}'"
        ) from exc


def is_known_zone(name: str) -> bool:
    try:
        zone(name)
    except GraphError:
        return False
    return True


def _trim_fraction(text: str) -> str:
    # Graph sends 7 fractional digits; datetime accepts at most 6.
    return _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)


def parse_local(value: str, tz: tzinfo) -> datetime:
    """A dateTime string (no offset expected) interpreted in `tz`, returned as aware UTC."""
    text = _trim_fraction(value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise GraphError(
            400, "ErrorInvalidRequest", f"Cannot convert the literal '{value}' to DateTime."
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def parse_date_time_time_zone(value: Any, field: str) -> tuple[datetime, str]:
    """A dateTimeTimeZone object -> (aware UTC instant, the zone name as given)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", f"The property '{field}' must be a dateTimeTimeZone.")
    tz_name = value.get("timeZone") or "UTC"
    if not isinstance(tz_name, str):
        raise GraphError(400, "ErrorInvalidRequest", f"The property '{field}.timeZone' must be a string.")
    return parse_local(value["dateTime"], zone(tz_name)), tz_name


def parse_instant(value: str) -> datetime:
    """An ISO-8601 instant such as '2016-11-20T18:23:45.9356913Z' (naive values are UTC)."""
    return parse_local(value, UTC)


def format_local(instant: datetime, tz_name: str) -> dict[str, str]:
    """A dateTimeTimeZone object for `instant` expressed in `tz_name` (7 fractional digits, like Graph)."""
    local = instant.astimezone(zone(tz_name))
    return {
        "dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0",
        "timeZone": tz_name,
    }


def format_instant(instant: datetime) -> str:
    """'2017-04-15T03:00:50.7579581Z'."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"
