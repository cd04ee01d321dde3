"""The one way the ACS writes a point in time for others to read: RFC 3339 in
UTC with ``Z`` (``2026-03-01T12:00:00.250000Z``), the form pydantic gives the
API's models, so every timestamp an operator or a webhook sees compares as
text and parses the same way."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(when: datetime) -> str:
    """``when`` in UTC with a ``Z``; a naive datetime is taken as UTC already."""
    if when.tzinfo is UTC:  # what the ACS's own clocks give: nothing to convert
        return when.isoformat().replace("+00:00", "Z")
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def rfc3339_or_none(when: datetime | None) -> str | None:
    return None if when is None else rfc3339(when)
