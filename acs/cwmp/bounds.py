"""Bounds on what a CPE may put in an Inform, checked before anything is stored.

The lengths are TR-069's (Amendment 6, A.3.3.1: DeviceIdStruct, EventStruct,
ParameterValueStruct) and TR-181's for the DeviceInfo strings the ACS copies
into indexed columns. Past them a value is not a quirk of a real CPE but a
mistake or an attack, and PostgreSQL would refuse it anyway (a btree row is
limited to about a third of a page) with an error the CPE cannot act on.
"""

from __future__ import annotations

import re

from acs.cwmp import messages as m

MANUFACTURER_MAX = 64
PRODUCT_CLASS_MAX = 64
SERIAL_NUMBER_MAX = 64
EVENTS_MAX = 64  # Inform's Event is EventStruct[64]
EVENT_CODE_MAX = 64
COMMAND_KEY_MAX = 32
PARAMETER_NAME_MAX = 256
XSD_TYPE_MAX = 64  # "xsd:unsignedInt" and the like; the name of a type, not data
# No TR-069 bound for a value in general; TR-181's longest strings (certificates,
# lists) stay well below this, and it keeps one Inform's tree patch small
PARAMETER_VALUE_MAX = 65_536
# DeviceInfo.* are string(64) in TR-181 (and TR-098); ConnectionRequestURL string(256)
HOT_VALUE_MAX = {
    "DeviceInfo.SoftwareVersion": 64,
    "DeviceInfo.HardwareVersion": 64,
    "DeviceInfo.ProvisioningCode": 64,
    "ManagementServer.ConnectionRequestURL": 256,
}
_ROOTS = ("InternetGatewayDevice.", "Device.")
_HOT_BY_PATH = {root + rest: limit for root in _ROOTS for rest, limit in HOT_VALUE_MAX.items()}

_OUI = re.compile(r"[0-9A-Fa-f]{6}")
# XML 1.0 characters only: the parser cannot produce others, but an Inform may
# be built elsewhere (a relay, a test), and NUL or a lone surrogate must never
# reach PostgreSQL, which refuses both
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InformOutOfBounds(ValueError):
    """An Inform field past its bound; ``field`` names it as on the wire."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.reason = f"{field}: {problem}"


def _text(field: str, value: str, limit: int, *, required: bool = False) -> None:
    if required and not value.strip():
        raise InformOutOfBounds(field, "must not be empty")
    if len(value) > limit:
        raise InformOutOfBounds(field, f"{len(value)} characters, at most {limit}")
    bad = _NOT_XML_CHAR.search(value)
    if bad is not None:
        raise InformOutOfBounds(field, f"character U+{ord(bad.group()):04X} is not allowed")


def check_inform(inform: m.Inform) -> None:
    """Raise InformOutOfBounds for the first field past its bound."""
    if not _within_bounds(inform):
        _check_each(inform)


def _within_bounds(inform: m.Inform) -> bool:
    """Every bound at once, naming no field: the labels of ``_check_each`` (three
    f-strings per parameter) cost more than the checks; a False is only a reason
    to look field by field, which finds the one to name."""
    ident = inform.device_id
    if not (
        len(ident.manufacturer) <= MANUFACTURER_MAX
        and len(ident.product_class) <= PRODUCT_CLASS_MAX
        and len(ident.serial_number) <= SERIAL_NUMBER_MAX
        and ident.serial_number.strip()
        and _OUI.fullmatch(ident.oui) is not None
        and len(inform.events) <= EVENTS_MAX
    ):
        return False
    texts = [ident.manufacturer, ident.product_class, ident.serial_number]
    for event in inform.events:
        code = event.event_code
        if (
            len(code) > EVENT_CODE_MAX
            or not code.strip()
            or len(event.command_key) > COMMAND_KEY_MAX
        ):
            return False
        texts += (code, event.command_key)
    for p in inform.parameter_list:
        name = p.name
        if (
            len(name) > PARAMETER_NAME_MAX
            or not name.strip()
            or len(p.value) > _HOT_BY_PATH.get(name, PARAMETER_VALUE_MAX)
            or len(p.xsd_type) > XSD_TYPE_MAX
        ):
            return False
        texts += (name, p.value, p.xsd_type)
    # one search over all of them: the tab that joins them is an XML character
    return _NOT_XML_CHAR.search("\t".join(texts)) is None


def _check_each(inform: m.Inform) -> None:
    ident = inform.device_id
    _text("DeviceId.Manufacturer", ident.manufacturer, MANUFACTURER_MAX)
    if _OUI.fullmatch(ident.oui) is None:
        raise InformOutOfBounds("DeviceId.OUI", "must be six hexadecimal digits")
    _text("DeviceId.ProductClass", ident.product_class, PRODUCT_CLASS_MAX)
    _text("DeviceId.SerialNumber", ident.serial_number, SERIAL_NUMBER_MAX, required=True)
    if len(inform.events) > EVENTS_MAX:
        raise InformOutOfBounds("Event", f"{len(inform.events)} events, at most {EVENTS_MAX}")
    for i, event in enumerate(inform.events):
        _text(f"Event[{i}].EventCode", event.event_code, EVENT_CODE_MAX, required=True)
        _text(f"Event[{i}].CommandKey", event.command_key, COMMAND_KEY_MAX)
    for i, p in enumerate(inform.parameter_list):
        _text(f"ParameterList[{i}].Name", p.name, PARAMETER_NAME_MAX, required=True)
        where = f"ParameterList[{i}] ({p.name}).Value"
        _text(where, p.value, _HOT_BY_PATH.get(p.name, PARAMETER_VALUE_MAX))
        _text(f"{where} xsi:type", p.xsd_type, XSD_TYPE_MAX)
