"""Device identifiers, built the way GenieACS builds them.

Operators who come from GenieACS recognise ``OUI-ProductClass-SerialNumber``
ids, so we keep that exact format, including its quirk of writing escaped bytes
in uppercase hex *without* zero padding (0x0A becomes ``%A``).
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[^A-Za-z0-9_]")


def _escape_char(match: re.Match[str]) -> str:
    return "".join(f"%{byte:X}" for byte in match.group(0).encode("utf-8"))


def escape_id_part(part: str) -> str:
    """Escape one part of a device id: every char outside [A-Za-z0-9_] as %HEX bytes."""
    return _SAFE.sub(_escape_char, part)


def device_id(oui: str, product_class: str, serial_number: str) -> str:
    """The id of a device from its DeviceIdStruct fields (TR-069 A.3.3.1)."""
    parts = [oui, product_class, serial_number] if product_class else [oui, serial_number]
    return "-".join(escape_id_part(p) for p in parts)
