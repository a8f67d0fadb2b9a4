"""The interfaces the service needs from the outside world (Protocols only)."""
