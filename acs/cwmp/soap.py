"""SOAP envelope codec for CWMP: bytes <-> ``Envelope`` holding one typed message.

CWMP is hostile input from the internet and real CPEs are quirky, so parsing
is strict about safety and lenient about style:

- a hardened lxml parser (no network, no entities, no DTD) and any DOCTYPE is
  refused outright;
- elements are matched by local name, so any prefix, any urn:dslforum-org:
  cwmp-1-N namespace, a default namespace or none at all are all accepted;
- scalar fields may come in any order; unknown fields are ignored; array
  wrappers' soap-enc:arrayType is ignored on input.

Emitting is strict: elements in the schema's order, arrayType on every array,
so every message validates against the official XSD of its namespace.

Field layouts are declared once per message class (``FIELDS``) and drive both
directions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from lxml import etree

from acs.cwmp import messages as m

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC_NS = "http://schemas.xmlsoap.org/soap/encoding/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CWMP_NS_1_0 = "urn:dslforum-org:cwmp-1-0"
CWMP_NS_1_1 = "urn:dslforum-org:cwmp-1-1"
CWMP_NS_1_2 = "urn:dslforum-org:cwmp-1-2"  # also CWMP 1.3 and 1.4
CWMP_NS_PREFIX = "urn:dslforum-org:cwmp-"

UNKNOWN_TIME = "0001-01-01T00:00:00Z"
MAX_DEPTH = 32  # CWMP messages nest 6 deep; deeper is an attack or garbage

_XSI_TYPE = f"{{{XSI_NS}}}type"
# Old SOAP toolkits still bind xsi to the 1999/2000 drafts' namespaces.
_OLD_XSI_TYPES = (
    "{http://www.w3.org/1999/XMLSchema-instance}type",
    "{http://www.w3.org/2000/10/XMLSchema-instance}type",
)
_ARRAY_TYPE = f"{{{SOAP_ENC_NS}}}arrayType"


class CwmpParseError(ValueError):
    """A message we cannot accept, with the fault to answer and a reason."""

    def __init__(
        self,
        reason: str,
        fault_code: int = 8003,
        cwmp_id: str | None = None,
        cwmp_ns: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fault_code = fault_code
        self.cwmp_id = cwmp_id
        self.cwmp_ns = cwmp_ns


@dataclass(slots=True)
class Envelope:
    body: m.Message
    cwmp_id: str | None = None
    cwmp_ns: str = CWMP_NS_1_0
    hold_requests: bool = False
    no_more_requests: bool = False
    session_timeout: int | None = None
    supported_cwmp_versions: str | None = None
    use_cwmp_version: str | None = None


# ------------------------------------------------------------------ scalar codecs


def _local(tag: Any) -> str:
    # lxml gives "{ns}Name" for qualified elements and a non-str tag for
    # entities and the like; most CWMP elements are unqualified
    if tag.__class__ is not str:
        return ""
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def _text(el: etree._Element) -> str:
    return el.text or ""


_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


def _to_int(text: str) -> int:
    # xsd:int lexical space only: int() alone would also take "1_000" and
    # non-ASCII digits such as "\uff11"
    if _INT.fullmatch(text) is None:
        raise ValueError(f"integer expected, got {text!r}")
    return int(text)


def _to_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true"):
        return True
    if t in ("0", "false"):
        return False
    raise ValueError(f"boolean expected, got {text!r}")


_TIME = re.compile(
    r"^\s*([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?\s*$"
)


def _to_time(text: str) -> datetime | None:
    if not text.strip():
        return None
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"dateTime expected, got {text!r}")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    if year == "0001":
        return None  # TR-069's Unknown Time
    if zone == "Z" and frac is None and len(text) == 20:
        # what nearly every CPE sends (in every Inform): the C parser is 5x faster
        return datetime.fromisoformat(text)
    tz: timezone = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    micro = int((frac or ".0")[1:7].ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )


def format_time(value: datetime | None) -> str:
    if value is None:
        return UNKNOWN_TIME
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_bool(value: bool) -> str:
    return "true" if value else "false"


# Emitting builds the document as text instead of an lxml tree: building the
# tree and calling tostring() cost as much as parsing the Inform it answers
# (about 15 us for a six-element InformResponse, lxml 6.1). Text is safe here
# because every name and prefix is ours; only values come from outside, and
# they go through _esc/_esc_attr, and serialize_envelope refuses characters
# XML 1.0 cannot carry, as lxml did.


def _esc(text: str) -> str:
    """Character data as lxml writes it; \\r as &#13; so it survives parsing."""
    # most values need nothing: four scans in C are cheaper than four replace()
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


def _esc_attr(text: str) -> str:
    return _esc(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


# XML 1.0 Char production (section 2.2); anything else makes a document no
# parser accepts, so it is refused before it is sent
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# ------------------------------------------------------------------ field kinds


class Kind:
    """How one field is read from and written to XML."""

    def decode(self, el: etree._Element) -> Any:
        raise NotImplementedError

    def encode(self, out: list[str], name: str, value: Any) -> None:
        """Append the element ``name`` holding ``value`` to ``out``, as text."""
        raise NotImplementedError


class Scalar(Kind):
    def __init__(self, read: Callable[[str], Any], write: Callable[[Any], str]) -> None:
        self.read = read
        self.write = write

    def decode(self, el: etree._Element) -> Any:
        return self.read(el.text or "")

    def encode(self, out: list[str], name: str, value: Any) -> None:
        out.append(f"<{name}>{_esc(self.write(value))}</{name}>")


STR = Scalar(str, str)
INT = Scalar(_to_int, str)
BOOL = Scalar(_to_bool, _from_bool)
TIME = Scalar(_to_time, format_time)


class ParameterValue(Kind):
    """ParameterValueStruct: the Value keeps its xsi:type as sent."""

    def decode(self, el: etree._Element) -> m.ParameterValueStruct:
        # the hottest loop of the codec (every Inform and GetParameterValues
        # answer), so _local is inlined
        name: str | None = None
        value = ""
        xsd_type = "xsd:string"
        for child in el:
            tag = child.tag
            if tag.__class__ is not str:
                continue
            if tag[0] == "{":
                tag = tag.rpartition("}")[2]
            if tag == "Name":
                name = child.text or ""
            elif tag == "Value":
                value = child.text or ""
                declared = child.get(_XSI_TYPE)
                if declared is None and len(child.attrib):
                    declared = next(filter(None, map(child.get, _OLD_XSI_TYPES)), None)
                if declared:
                    xsd_type = "xsd:" + declared.rpartition(":")[2]
        if name is None:
            raise ValueError("ParameterValueStruct without Name")
        return m.ParameterValueStruct(name, value, xsd_type)

    def encode(self, out: list[str], name: str, value: Any) -> None:
        out.append(
            f"<{name}><Name>{_esc(value.name)}</Name>"
            f'<Value xsi:type="{_esc_attr(value.xsd_type)}">{_esc(value.value)}</Value></{name}>'
        )


class Struct(Kind):
    """A struct (or message body) laid out by its FIELDS entry."""

    def __init__(self, cls: type, xsi_type: str | None = None) -> None:
        self.cls = cls
        self.xsi_type = xsi_type  # for polymorphic items (ChangeDUState operations)

    def decode(self, el: etree._Element) -> Any:
        return decode_fields(self.cls, el)

    def encode(self, out: list[str], name: str, value: Any) -> None:
        out.append(f'<{name} xsi:type="{self.xsi_type}">' if self.xsi_type else f"<{name}>")
        encode_fields(out, value)
        out.append(f"</{name}>")


class Array(Kind):
    """A SOAP-encoded array: a wrapper element whose children are the items."""

    def __init__(self, item_name: str, item: Kind, array_type: str) -> None:
        self.item_name = item_name
        self.item = item
        self.array_type = array_type  # e.g. "cwmp:ParameterValueStruct", "xsd:string"

    def decode(self, el: etree._Element) -> list[Any]:
        decode = self.item.decode
        return [decode(child) for child in el if child.tag.__class__ is str]

    def encode(self, out: list[str], name: str, value: Any) -> None:
        start = f'<{name} soap-enc:arrayType="{self.array_type}[{len(value)}]"'
        if not value:
            out.append(start + "/>")  # as lxml wrote it
            return
        out.append(start + ">")
        for item in value:
            self.item.encode(out, self.item_name, item)
        out.append(f"</{name}>")


class Repeated(Kind):
    """An element repeated in place (no wrapper), e.g. SetParameterValuesFault."""

    def __init__(self, item: Kind) -> None:
        self.item = item

    def decode(self, el: etree._Element) -> Any:  # called per occurrence
        return self.item.decode(el)

    def encode(self, out: list[str], name: str, value: Any) -> None:
        for item in value:
            self.item.encode(out, name, item)


class Operation(Kind):
    """ChangeDUState Operations: the concrete type is named by xsi:type."""

    TYPES: dict[str, type] = {
        "InstallOpStruct": m.InstallOpStruct,
        "UpdateOpStruct": m.UpdateOpStruct,
        "UninstallOpStruct": m.UninstallOpStruct,
    }

    def decode(self, el: etree._Element) -> Any:
        declared = (el.get(_XSI_TYPE) or "").rpartition(":")[2]
        cls = self.TYPES.get(declared)
        if cls is None:
            raise ValueError(f"unknown operation type {declared!r}")
        return decode_fields(cls, el)

    def encode(self, out: list[str], name: str, value: Any) -> None:
        Struct(type(value), "cwmp:" + type(value).__name__).encode(out, name, value)


class ColumnArray(Array):
    """An array of two-field structs read with compiled XPath instead of a Python
    walk: a discovery's answers are ~1,400 structs each, and walking them element
    by element was most of the ACS's CPU in a boot storm (BENCHMARKS.md run 11).

    Only the plain shape every CPE sends takes this path, and XPath proves it in
    C first: every struct holds exactly the two expected elements, unqualified,
    with no element inside them, and (``needs_text``) text in them; the columns
    are then aligned struct by struct. Anything else (a namespace prefix on the
    fields, an extra vendor field, a struct missing its Value, a value with
    markup in it) goes through the general decoder, which gives the same
    result for the plain shape."""

    def __init__(
        self,
        item_name: str,
        item: Kind,
        array_type: str,
        fields: tuple[str, str],
        needs_text: tuple[bool, bool],
        build: Callable[[etree._Element], list[Any]],
        small: Callable[[etree._Element], list[Any] | None] | None = None,
    ) -> None:
        super().__init__(item_name, item, array_type)
        # counts rather than a predicate per struct (three times cheaper): 2n
        # children in all, n of each field and no struct with a second one, so
        # each struct has exactly one of each; no element below the fields
        conditions = ["count(*/*) = 2 * count(*)", "not(*/*/*)"]
        for name in fields:
            conditions += [f"count(*/{name}) = count(*)", f"not(*/{name}[2])"]
        # one text node in each such field, so the text() columns align (and
        # none is empty)
        for name, text in zip(fields, needs_text, strict=True):
            if text:
                conditions += [f"count(*/{name}/text()) = count(*)", f"not(*/{name}/text()[2])"]
        self._plain = etree.XPath(" and ".join(conditions))
        self._build = build
        self._small = small

    def decode(self, el: etree._Element) -> list[Any]:
        if self._small is not None and 0 < len(el) <= SMALL_ARRAY:
            found = self._small(el)
            if found is not None:
                return found
        if len(el) and self._plain(el):
            return self._build(el)
        return super().decode(el)


_XSI = {"xsi": XSI_NS}
_PV_NAMES = etree.XPath("*/Name/text()", smart_strings=False)
_PV_VALUES = etree.XPath("*/Value", smart_strings=False)
# every Value typed with the 2001 xsi namespace (else: the general decoder,
# which also reads the older drafts' namespaces)
_PV_TYPED = etree.XPath("count(*/Value/@xsi:type) = count(*)", namespaces=_XSI)
_PV_TYPES = etree.XPath("*/Value/@xsi:type", namespaces=_XSI, smart_strings=False)
_XSD_TYPES: dict[str, str] = {}  # xsi:type as sent -> as kept ("xsd:" + local name)


def _strings(xpath: etree.XPath, el: etree._Element) -> list[str]:
    # the XPaths that select text() or @attributes, with smart_strings off
    return cast(list[str], xpath(el))


def _xsd_type(declared: str) -> str:
    found = _XSD_TYPES.get(declared)
    if found is None:
        found = "xsd:" + declared.rpartition(":")[2] if declared else "xsd:string"
        if len(_XSD_TYPES) < 256:  # a CPE inventing types must not grow it
            _XSD_TYPES[declared] = found
    return found


def _parameter_values(el: etree._Element) -> list[m.ParameterValueStruct]:
    if not _PV_TYPED(el):
        return Array.decode(PVS_ARRAY, el)
    # .text of an element without children is all of its text, "" for none
    values = [v.text or "" for v in cast(list[etree._Element], _PV_VALUES(el))]
    types = list(map(_xsd_type, _strings(_PV_TYPES, el)))
    return list(map(m.ParameterValueStruct, _strings(_PV_NAMES, el), values, types))


# An Inform's few values: five XPath evaluations (each sets up a context in lxml)
# cost more than walking 8-16 structs; the walk takes only the plain shape the
# XPaths prove, strictly (Name then Value, nothing in either, a typed Value), and
# leaves anything else to them (None)
SMALL_ARRAY = 32


def _few_parameter_values(el: etree._Element) -> list[m.ParameterValueStruct] | None:
    out = []
    for struct in el:
        if struct.tag.__class__ is not str or len(struct) != 2:
            return None
        name, value = struct
        if name.tag != "Name" or value.tag != "Value" or len(name) or len(value):
            return None
        text, declared = name.text, value.get(_XSI_TYPE)
        if text is None or declared is None:
            return None
        out.append(m.ParameterValueStruct(text, value.text or "", _xsd_type(declared)))
    return out


_PI_NAMES = etree.XPath("*/Name/text()", smart_strings=False)
_PI_WRITABLE = etree.XPath("*/Writable/text()", smart_strings=False)


def _parameter_infos(el: etree._Element) -> list[m.ParameterInfoStruct]:
    try:
        writable = [_BOOLS[w] for w in _strings(_PI_WRITABLE, el)]
    except KeyError:  # " 1", "TRUE": the general decoder's reading (or its error)
        return Array.decode(PI_ARRAY, el)
    return list(map(m.ParameterInfoStruct, _strings(_PI_NAMES, el), writable))


_BOOLS = {"1": True, "true": True, "0": False, "false": False}


Field = tuple[str, str, Kind, bool]  # attribute, element, kind, required


def f(attr: str, element: str, kind: Kind, required: bool = True) -> Field:
    return (attr, element, kind, required)


PVS = ParameterValue()
PVS_ARRAY = ColumnArray(
    "ParameterValueStruct",
    PVS,
    "cwmp:ParameterValueStruct",
    ("Name", "Value"),
    (True, False),
    _parameter_values,
    _few_parameter_values,
)
PI_ARRAY = ColumnArray(
    "ParameterInfoStruct",
    Struct(m.ParameterInfoStruct),
    "cwmp:ParameterInfoStruct",
    ("Name", "Writable"),
    (True, True),
    _parameter_infos,
)
FAULT_STRUCT = Struct(m.FaultStruct)
STRINGS = Array("string", STR, "xsd:string")

FIELDS: dict[type, tuple[Field, ...]] = {
    m.DeviceIdStruct: (
        f("manufacturer", "Manufacturer", STR),
        f("oui", "OUI", STR),
        f("product_class", "ProductClass", STR, False),
        f("serial_number", "SerialNumber", STR),
    ),
    m.EventStruct: (f("event_code", "EventCode", STR), f("command_key", "CommandKey", STR, False)),
    m.ParameterInfoStruct: (f("name", "Name", STR), f("writable", "Writable", BOOL)),
    m.ParameterAttributeStruct: (
        f("name", "Name", STR),
        f("notification", "Notification", INT),
        f("access_list", "AccessList", STRINGS, False),
    ),
    m.SetParameterAttributesStruct: (
        f("name", "Name", STR),
        f("notification_change", "NotificationChange", BOOL),
        f("notification", "Notification", INT),
        f("access_list_change", "AccessListChange", BOOL),
        f("access_list", "AccessList", STRINGS, False),
    ),
    m.FaultStruct: (
        f("fault_code", "FaultCode", INT),
        f("fault_string", "FaultString", STR, False),
    ),
    m.SetParameterValuesFault: (
        f("parameter_name", "ParameterName", STR),
        f("fault_code", "FaultCode", INT),
        f("fault_string", "FaultString", STR, False),
    ),
    m.QueuedTransferStruct: (f("command_key", "CommandKey", STR), f("state", "State", INT)),
    m.AllQueuedTransferStruct: (
        f("command_key", "CommandKey", STR),
        f("state", "State", INT),
        f("is_download", "IsDownload", BOOL),
        f("file_type", "FileType", STR),
        f("file_size", "FileSize", INT),
        f("target_file_name", "TargetFileName", STR),
    ),
    m.TimeWindowStruct: (
        f("window_start", "WindowStart", INT),
        f("window_end", "WindowEnd", INT),
        f("window_mode", "WindowMode", STR),
        f("user_message", "UserMessage", STR, False),
        f("max_retries", "MaxRetries", INT, False),
    ),
    m.ArgStruct: (f("name", "Name", STR), f("value", "Value", STR)),
    m.InstallOpStruct: (
        f("url", "URL", STR),
        f("uuid", "UUID", STR, False),
        f("username", "Username", STR, False),
        f("password", "Password", STR, False),
        f("execution_env_ref", "ExecutionEnvRef", STR, False),
    ),
    m.UpdateOpStruct: (
        f("uuid", "UUID", STR, False),
        f("version", "Version", STR, False),
        f("url", "URL", STR, False),
        f("username", "Username", STR, False),
        f("password", "Password", STR, False),
    ),
    m.UninstallOpStruct: (
        f("uuid", "UUID", STR),
        f("version", "Version", STR, False),
        f("execution_env_ref", "ExecutionEnvRef", STR, False),
    ),
    m.OpResultStruct: (
        f("uuid", "UUID", STR),
        f("deployment_unit_ref", "DeploymentUnitRef", STR),
        f("version", "Version", STR),
        f("current_state", "CurrentState", STR),
        f("resolved", "Resolved", BOOL),
        f("execution_unit_ref_list", "ExecutionUnitRefList", STR),
        f("start_time", "StartTime", TIME),
        f("complete_time", "CompleteTime", TIME),
        f("fault", "Fault", FAULT_STRUCT),
    ),
    m.AutonOpResultStruct: (
        f("uuid", "UUID", STR),
        f("deployment_unit_ref", "DeploymentUnitRef", STR),
        f("version", "Version", STR),
        f("current_state", "CurrentState", STR),
        f("resolved", "Resolved", BOOL),
        f("execution_unit_ref_list", "ExecutionUnitRefList", STR),
        f("start_time", "StartTime", TIME),
        f("complete_time", "CompleteTime", TIME),
        f("fault", "Fault", FAULT_STRUCT),
        f("operation_performed", "OperationPerformed", STR),
    ),
    # ---- methods the CPE calls
    m.Inform: (
        f("device_id", "DeviceId", Struct(m.DeviceIdStruct)),
        f("events", "Event", Array("EventStruct", Struct(m.EventStruct), "cwmp:EventStruct")),
        f("max_envelopes", "MaxEnvelopes", INT, False),
        f("current_time", "CurrentTime", TIME, False),
        f("retry_count", "RetryCount", INT, False),
        f(
            "parameter_list",
            "ParameterList",
            PVS_ARRAY,
            False,
        ),
    ),
    m.InformResponse: (f("max_envelopes", "MaxEnvelopes", INT, False),),
    m.TransferComplete: (
        f("command_key", "CommandKey", STR, False),
        f("fault", "FaultStruct", FAULT_STRUCT, False),
        f("start_time", "StartTime", TIME, False),
        f("complete_time", "CompleteTime", TIME, False),
    ),
    m.TransferCompleteResponse: (),
    m.AutonomousTransferComplete: (
        f("announce_url", "AnnounceURL", STR, False),
        f("transfer_url", "TransferURL", STR, False),
        f("is_download", "IsDownload", BOOL),
        f("file_type", "FileType", STR),
        f("file_size", "FileSize", INT, False),
        f("target_file_name", "TargetFileName", STR, False),
        f("fault", "FaultStruct", FAULT_STRUCT, False),
        f("start_time", "StartTime", TIME, False),
        f("complete_time", "CompleteTime", TIME, False),
    ),
    m.AutonomousTransferCompleteResponse: (),
    m.RequestDownload: (
        f("file_type", "FileType", STR),
        f(
            "file_type_arg",
            "FileTypeArg",
            Array("ArgStruct", Struct(m.ArgStruct), "cwmp:ArgStruct"),
            False,
        ),
    ),
    m.RequestDownloadResponse: (),
    m.Kicked: (
        f("command", "Command", STR),
        f("referer", "Referer", STR, False),
        f("arg", "Arg", STR, False),
        f("next", "Next", STR, False),
    ),
    m.KickedResponse: (f("next_url", "NextURL", STR, False),),
    m.DUStateChangeComplete: (
        f("results", "Results", Repeated(Struct(m.OpResultStruct))),
        f("command_key", "CommandKey", STR, False),
    ),
    m.DUStateChangeCompleteResponse: (),
    m.AutonomousDUStateChangeComplete: (
        f("results", "Results", Repeated(Struct(m.AutonOpResultStruct))),
    ),
    m.AutonomousDUStateChangeCompleteResponse: (),
    m.GetRPCMethods: (),
    m.GetRPCMethodsResponse: (f("method_list", "MethodList", STRINGS, False),),
    # ---- methods the ACS calls
    m.GetParameterNames: (
        f("parameter_path", "ParameterPath", STR, False),
        f("next_level", "NextLevel", BOOL),
    ),
    m.GetParameterNamesResponse: (
        f(
            "parameter_list",
            "ParameterList",
            PI_ARRAY,
            False,
        ),
    ),
    m.GetParameterValues: (f("parameter_names", "ParameterNames", STRINGS),),
    m.GetParameterValuesResponse: (
        f(
            "parameter_list",
            "ParameterList",
            PVS_ARRAY,
            False,
        ),
    ),
    m.SetParameterValues: (
        f(
            "parameter_list",
            "ParameterList",
            PVS_ARRAY,
        ),
        f("parameter_key", "ParameterKey", STR, False),
    ),
    m.SetParameterValuesResponse: (f("status", "Status", INT),),
    m.GetParameterAttributes: (f("parameter_names", "ParameterNames", STRINGS),),
    m.GetParameterAttributesResponse: (
        f(
            "parameter_list",
            "ParameterList",
            Array(
                "ParameterAttributeStruct",
                Struct(m.ParameterAttributeStruct),
                "cwmp:ParameterAttributeStruct",
            ),
            False,
        ),
    ),
    m.SetParameterAttributes: (
        f(
            "parameter_list",
            "ParameterList",
            Array(
                "SetParameterAttributesStruct",
                Struct(m.SetParameterAttributesStruct),
                "cwmp:SetParameterAttributesStruct",
            ),
        ),
    ),
    m.SetParameterAttributesResponse: (),
    m.AddObject: (
        f("object_name", "ObjectName", STR),
        f("parameter_key", "ParameterKey", STR, False),
    ),
    m.AddObjectResponse: (
        f("instance_number", "InstanceNumber", INT),
        f("status", "Status", INT),
    ),
    m.DeleteObject: (
        f("object_name", "ObjectName", STR),
        f("parameter_key", "ParameterKey", STR, False),
    ),
    m.DeleteObjectResponse: (f("status", "Status", INT),),
    m.Reboot: (f("command_key", "CommandKey", STR, False),),
    m.RebootResponse: (),
    m.FactoryReset: (),
    m.FactoryResetResponse: (),
    m.Download: (
        f("command_key", "CommandKey", STR, False),
        f("file_type", "FileType", STR),
        f("url", "URL", STR),
        f("username", "Username", STR, False),
        f("password", "Password", STR, False),
        f("file_size", "FileSize", INT, False),
        f("target_file_name", "TargetFileName", STR, False),
        f("delay_seconds", "DelaySeconds", INT, False),
        f("success_url", "SuccessURL", STR, False),
        f("failure_url", "FailureURL", STR, False),
    ),
    m.DownloadResponse: (
        f("status", "Status", INT),
        f("start_time", "StartTime", TIME, False),
        f("complete_time", "CompleteTime", TIME, False),
    ),
    m.Upload: (
        f("command_key", "CommandKey", STR, False),
        f("file_type", "FileType", STR),
        f("url", "URL", STR),
        f("username", "Username", STR, False),
        f("password", "Password", STR, False),
        f("delay_seconds", "DelaySeconds", INT, False),
    ),
    m.UploadResponse: (
        f("status", "Status", INT),
        f("start_time", "StartTime", TIME, False),
        f("complete_time", "CompleteTime", TIME, False),
    ),
    m.ScheduleInform: (
        f("delay_seconds", "DelaySeconds", INT),
        f("command_key", "CommandKey", STR, False),
    ),
    m.ScheduleInformResponse: (),
    m.ScheduleDownload: (
        f("command_key", "CommandKey", STR, False),
        f("file_type", "FileType", STR),
        f("url", "URL", STR),
        f("username", "Username", STR, False),
        f("password", "Password", STR, False),
        f("file_size", "FileSize", INT, False),
        f("target_file_name", "TargetFileName", STR, False),
        f(
            "time_window_list",
            "TimeWindowList",
            Array("TimeWindowStruct", Struct(m.TimeWindowStruct), "cwmp:TimeWindowStruct"),
            False,
        ),
    ),
    m.ScheduleDownloadResponse: (),
    m.CancelTransfer: (f("command_key", "CommandKey", STR, False),),
    m.CancelTransferResponse: (),
    m.GetQueuedTransfers: (),
    m.GetQueuedTransfersResponse: (
        f(
            "transfer_list",
            "TransferList",
            Array(
                "QueuedTransferStruct", Struct(m.QueuedTransferStruct), "cwmp:QueuedTransferStruct"
            ),
            False,
        ),
    ),
    m.GetAllQueuedTransfers: (),
    m.GetAllQueuedTransfersResponse: (
        f(
            "transfer_list",
            "TransferList",
            Array(
                "AllQueuedTransferStruct",
                Struct(m.AllQueuedTransferStruct),
                "cwmp:AllQueuedTransferStruct",
            ),
            False,
        ),
    ),
    m.ChangeDUState: (
        f("operations", "Operations", Repeated(Operation())),
        f("command_key", "CommandKey", STR, False),
    ),
    m.ChangeDUStateResponse: (),
    m.Fault: (
        f("fault_code", "FaultCode", INT),
        f("fault_string", "FaultString", STR, False),
        f(
            "set_parameter_values_faults",
            "SetParameterValuesFault",
            Repeated(Struct(m.SetParameterValuesFault)),
            False,
        ),
    ),
}

# Defaults for optional fields the dataclass itself requires, so a CPE that
# omits them still parses (e.g. an Inform without CurrentTime or RetryCount).
_MISSING_DEFAULTS: dict[Kind, Any] = {STR: "", INT: 0, BOOL: False, TIME: None}


# element name -> (attribute, decoder, repeated, scalar reader) per class,
# built once rather than on every struct decoded; a scalar is read from the
# element's text right here, saving a call per field
_Decoder = tuple[str, Callable[[etree._Element], Any], bool, Callable[[str], Any] | None]
_DECODERS: dict[type, dict[str, _Decoder]] = {
    cls: {
        element: (
            attr,
            kind.decode,
            isinstance(kind, Repeated),
            kind.read if isinstance(kind, Scalar) else None,
        )
        for attr, element, kind, _ in fs
    }
    for cls, fs in FIELDS.items()
}


def decode_fields(cls: type, el: etree._Element) -> Any:
    decoders = _DECODERS[cls]
    values: dict[str, Any] = {}
    for child in el:
        tag = child.tag
        if tag.__class__ is not str:
            continue
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        spec = decoders.get(tag)
        if spec is None:
            continue  # unknown extra field: ignored, as real CPEs add vendor ones
        attr, decode, repeated, read = spec
        try:
            if read is not None:
                values[attr] = read(child.text or "")
            elif repeated:
                values.setdefault(attr, []).append(decode(child))
            else:
                values[attr] = decode(child)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{tag}: {exc}") from None
    fields = FIELDS[cls]
    if len(values) < len(fields):
        for attr, element, kind, required in fields:
            if attr in values:
                continue
            if required:
                raise ValueError(f"missing {element}")
            if isinstance(kind, Array | Repeated):
                values[attr] = []
            elif isinstance(kind, Struct):
                values[attr] = kind.cls()
            elif kind in _MISSING_DEFAULTS:
                values[attr] = _MISSING_DEFAULTS[kind]
    return cls(**values)


def encode_fields(out: list[str], value: Any) -> None:
    for attr, element, kind, _required in FIELDS[type(value)]:
        kind.encode(out, element, getattr(value, attr))


# ------------------------------------------------------------------ parsing

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)


def parse_xml(data: bytes) -> etree._Element:
    """Any XML document parsed with the codec's hardened settings (no DTD, no
    entities, no network), for code that reads CWMP bodies outside the codec."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise CwmpParseError("DOCTYPE and entity declarations are not allowed")
    try:
        return etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise CwmpParseError(f"malformed XML: {exc}") from None


def _cwmp_ns_of(tag: Any) -> str | None:
    if isinstance(tag, str) and tag.startswith("{" + CWMP_NS_PREFIX):
        return tag[1 : tag.index("}")]
    return None


def parse_envelope(data: bytes) -> Envelope | None:
    """Parse one CWMP message; None for an empty POST (or an empty soap:Body)."""
    if not data.strip():
        return None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise CwmpParseError("DOCTYPE and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise CwmpParseError(f"malformed XML: {exc}") from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs: DocInfo lacks doctype
    if docinfo.doctype:
        raise CwmpParseError("DOCTYPE and entity declarations are not allowed")
    if _local(root.tag) != "Envelope":
        raise CwmpParseError(f"not a SOAP envelope (root element {_local(root.tag)!r})")
    _check_depth(root)

    header = body = None
    for child in root:
        tag = _local(child.tag)
        if tag == "Header":
            if header is not None:
                raise CwmpParseError("SOAP envelope with two Header elements")
            header = child
        elif tag == "Body":
            if body is not None:
                raise CwmpParseError("SOAP envelope with two Body elements")
            body = child
    cwmp_id, cwmp_ns, extras = _parse_header(header)
    if body is None:
        raise CwmpParseError("SOAP envelope without Body", cwmp_id=cwmp_id, cwmp_ns=cwmp_ns)
    items = [c for c in body if isinstance(c.tag, str)]
    if not items:
        return None
    if len(items) > 1:
        raise CwmpParseError(
            f"SOAP Body holds {len(items)} elements; one message per envelope",
            cwmp_id=cwmp_id,
            cwmp_ns=cwmp_ns,
        )
    item = items[0]
    body_ns = _cwmp_ns_of(item.tag)
    if body_ns is None and _local(item.tag) == "Fault":  # SOAP fault: detail/cwmp:Fault
        body_ns = next(filter(None, (_cwmp_ns_of(el.tag) for el in item.iter())), None)
    cwmp_ns = body_ns or cwmp_ns or CWMP_NS_1_0
    try:
        message = _parse_body(item)
    except ValueError as exc:
        raise CwmpParseError(
            f"{_local(item.tag)}: {exc}", cwmp_id=cwmp_id, cwmp_ns=cwmp_ns
        ) from None
    return Envelope(body=message, cwmp_id=cwmp_id, cwmp_ns=cwmp_ns, **extras)


# True when some element sits deeper than MAX_DEPTH (the root is level 1).
# One compiled XPath walks the tree in C; a Python walk (iterwalk) cost about
# as much as parsing the message. Its node sets are the elements of each level,
# so the work stays linear in the size of the document.
_TOO_DEEP = etree.XPath("boolean(" + "/*" * (MAX_DEPTH + 1) + ")")


def _check_depth(root: etree._Element) -> None:
    if _TOO_DEEP(root):
        raise CwmpParseError(f"XML nested deeper than {MAX_DEPTH} levels")


def _parse_header(header: etree._Element | None) -> tuple[str | None, str | None, dict[str, Any]]:
    cwmp_id: str | None = None
    cwmp_ns: str | None = None
    extras: dict[str, Any] = {}
    if header is None:
        return cwmp_id, cwmp_ns, extras
    seen_id = False
    for child in header:
        tag = _local(child.tag)
        text = _text(child).strip()
        if tag == "ID":
            if seen_id:
                raise CwmpParseError(
                    "duplicate cwmp:ID header", cwmp_id=cwmp_id, cwmp_ns=_cwmp_ns_of(child.tag)
                )
            seen_id = True
            cwmp_id = _text(child)
            cwmp_ns = _cwmp_ns_of(child.tag)
        elif tag == "HoldRequests":
            extras["hold_requests"] = text.lower() in ("1", "true")
        elif tag == "NoMoreRequests":
            extras["no_more_requests"] = text.lower() in ("1", "true")
        elif tag == "SessionTimeout" and text.isascii() and text.isdigit():  # not "²"
            extras["session_timeout"] = int(text)
        elif tag == "SupportedCWMPVersions":
            extras["supported_cwmp_versions"] = text
        elif tag == "UseCWMPVersion":
            extras["use_cwmp_version"] = text
    return cwmp_id, cwmp_ns, extras


def _parse_body(item: etree._Element) -> m.Message:
    name = _local(item.tag)
    if name == "Fault":
        return _parse_soap_fault(item)
    cls = m.MESSAGE_TYPES.get(name)
    if cls is None:
        return m.UnknownMethod(name=name)
    result: m.Message = decode_fields(cls, item)
    return result


def _parse_soap_fault(item: etree._Element) -> m.Fault:
    for el in item.iter():
        if _local(el.tag) == "Fault" and el is not item:
            fault: m.Fault = decode_fields(m.Fault, el)
            return fault
    # a bare SOAP fault without cwmp:Fault detail: keep what it says
    text = next((_text(el) for el in item.iter() if _local(el.tag) == "faultstring"), "")
    return m.Fault(fault_code=0, fault_string=text or "SOAP fault without cwmp:Fault detail")


# ------------------------------------------------------------------ emitting


def _envelope_open(cwmp_ns: str) -> str:
    # the CPE chose the cwmp namespace: it is a value like any other
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f'<soap-env:Envelope xmlns:soap-env="{SOAP_ENV_NS}" xmlns:soap-enc="{SOAP_ENC_NS}"'
        f' xmlns:xsd="{XSD_NS}" xmlns:xsi="{XSI_NS}" xmlns:cwmp="{_esc_attr(cwmp_ns)}">'
    )


_ENVELOPE_OPEN = {ns: _envelope_open(ns) for ns in (CWMP_NS_1_0, CWMP_NS_1_1, CWMP_NS_1_2)}
_MUST = ' soap-env:mustUnderstand="1"'


def serialize_envelope(envelope: Envelope) -> bytes:
    ns = envelope.cwmp_ns
    out = [_ENVELOPE_OPEN.get(ns) or _envelope_open(ns)]
    header: list[str] = []
    if envelope.cwmp_id is not None:
        header.append(f"<cwmp:ID{_MUST}>{_esc(envelope.cwmp_id)}</cwmp:ID>")
    if envelope.hold_requests:
        header.append(f"<cwmp:HoldRequests{_MUST}>1</cwmp:HoldRequests>")
    # NoMoreRequests is deprecated and in no CWMP schema: parsed, never sent
    if envelope.session_timeout is not None:
        header.append(f"<cwmp:SessionTimeout>{envelope.session_timeout:d}</cwmp:SessionTimeout>")
    if envelope.supported_cwmp_versions is not None:
        versions = _esc(envelope.supported_cwmp_versions)
        header.append(f"<cwmp:SupportedCWMPVersions>{versions}</cwmp:SupportedCWMPVersions>")
    if envelope.use_cwmp_version is not None:
        version = _esc(envelope.use_cwmp_version)
        header.append(f"<cwmp:UseCWMPVersion{_MUST}>{version}</cwmp:UseCWMPVersion>")
    if header:
        out.append("<soap-env:Header>")
        out += header
        out.append("</soap-env:Header>")
    out.append("<soap-env:Body>")
    message = envelope.body
    if isinstance(message, m.Fault):
        # TR-069 A.2.1: "Client" for faults caused by the request, else "Server"
        client = message.fault_code in _CLIENT_FAULTS
        out.append(
            f"<soap-env:Fault><faultcode>{'Client' if client else 'Server'}</faultcode>"
            "<faultstring>CWMP fault</faultstring><detail><cwmp:Fault>"
        )
        encode_fields(out, message)
        out.append("</cwmp:Fault></detail></soap-env:Fault>")
    else:
        if isinstance(message, m.UnknownMethod):
            raise ValueError("an UnknownMethod cannot be sent")
        name = message.element_name
        if FIELDS[type(message)]:
            out.append(f"<cwmp:{name}>")
            encode_fields(out, message)
            out.append(f"</cwmp:{name}>")
        else:  # as lxml wrote it, so the bytes CPEs see do not change
            out.append(f"<cwmp:{name}/>")
    out.append("</soap-env:Body></soap-env:Envelope>")
    text = "".join(out)
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise ValueError(
            f"All strings must be XML compatible: {bad.group()!r} at {bad.start()} is not"
        )
    return text.encode()


# Faults caused by the sender's request (TR-069 Tables A.5/A.6: "Client" type)
_CLIENT_FAULTS = frozenset(
    {
        8001,
        8003,
        8005,
        8006,
        9001,
        9003,
        9005,
        9006,
        9007,
        9008,
        9009,
        9012,
        9013,
        9015,
        9016,
        9019,
        9021,
        9022,
        9023,
        9024,
        9025,
        9026,
        9028,
        9029,
        9030,
        9031,
        9032,
    }
)
