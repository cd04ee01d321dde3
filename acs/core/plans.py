"""RPC plans: the sequence of ACS requests that carries out one piece of work.

A plan is a generator: it yields the next request to send the CPE, receives
the CPE's answer (a response or a ``Fault``) and finally returns a result
dict. Plans are pure: they never touch the database; the session driver sends
what they yield and records every response in the device's stored tree, so a
plan only decides *what to ask next*. That keeps a multi-round job (discovery,
refreshObject, addObject-then-set) resumable across HTTP exchanges and
testable without a socket.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator
from typing import Any

from acs.cwmp import messages as m

Plan = Generator[m.Message, m.Message, dict[str, Any]]


class PlanFault(Exception):
    """The CPE refused a request and the plan cannot go on."""

    def __init__(self, code: int, string: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {string}")
        self.code = code
        self.string = string
        self.detail = detail or {}

    @classmethod
    def from_fault(cls, fault: m.Fault) -> PlanFault:
        detail = {}
        if fault.set_parameter_values_faults:
            detail["setParameterValuesFaults"] = [
                {
                    "parameterName": f.parameter_name,
                    "faultCode": f.fault_code,
                    "faultString": f.fault_string,
                }
                for f in fault.set_parameter_values_faults
            ]
        return cls(fault.fault_code, fault.fault_string, detail)


def expect(response: m.Message, kind: type[m.Message]) -> Any:
    """The response as ``kind``, or PlanFault if the CPE answered with a fault."""
    if isinstance(response, m.Fault):
        raise PlanFault.from_fault(response)
    if not isinstance(response, kind):  # the session machine already checks this
        raise PlanFault(8003, f"expected {kind.__name__}, got {response.element_name}")
    return response


# Top-level objects of the two root data models (TR-181 Device:2, TR-098
# InternetGatewayDevice:1), for CPEs that refuse GetParameterNames on the root
# itself: we then ask for each of these and skip the ones the CPE lacks.
ROOT_CHILDREN = {
    "Device.": (
        "DeviceInfo",
        "ManagementServer",
        "Time",
        "UserInterface",
        "InterfaceStack",
        "DSL",
        "Optical",
        "Cellular",
        "ATM",
        "PTM",
        "Ethernet",
        "USB",
        "HPNA",
        "MoCA",
        "Ghn",
        "HomePlug",
        "UPA",
        "WiFi",
        "ZigBee",
        "Bridging",
        "PPP",
        "IP",
        "LLDP",
        "IPsec",
        "GRE",
        "L2TPv3",
        "VXLAN",
        "MAP",
        "CaptivePortal",
        "Routing",
        "NeighborDiscovery",
        "RouterAdvertisement",
        "IPv6rd",
        "DSLite",
        "QoS",
        "LANConfigSecurity",
        "Hosts",
        "DNS",
        "NAT",
        "PCP",
        "DHCPv4",
        "DHCPv6",
        "IEEE8021x",
        "Users",
        "SmartCardReaders",
        "UPnP",
        "DLNA",
        "Firewall",
        "PeriodicStatistics",
        "FaultMgmt",
        "Security",
        "FAP",
        "BulkData",
        "SoftwareModules",
        "XMPP",
        "IEEE1905",
        "MQTT",
        "DynamicDNS",
        "LEDs",
        "BASAPM",
        "LMAP",
        "Services",
        "GatewayInfo",
        "SelfTestDiagnostics",
        "PacketCaptureDiagnostics",
    ),
    "InternetGatewayDevice.": (
        "DeviceInfo",
        "DeviceConfig",
        "ManagementServer",
        "Time",
        "UserInterface",
        "Layer3Forwarding",
        "Layer2Bridging",
        "QueueManagement",
        "LANConfigSecurity",
        "IPPingDiagnostics",
        "TraceRouteDiagnostics",
        "DownloadDiagnostics",
        "UploadDiagnostics",
        "UDPEchoConfig",
        "LANDevice",
        "WANDevice",
        "Services",
        "CaptivePortal",
        "DLNA",
        "SmartCardReaders",
        "UPnP",
        "SelfTestDiagnostics",
        "NSLookupDiagnostics",
        "Firewall",
        "USBHosts",
        "PeriodicStatistics",
        "FaultMgmt",
        "Security",
        "FAP",
        "BulkData",
        "User",
    ),
}


def root_of(parameter_names: list[str]) -> str:
    """The root object ("Device." or "InternetGatewayDevice.") seen in an Inform."""
    for name in parameter_names:
        if name.startswith("InternetGatewayDevice."):
            return "InternetGatewayDevice."
    return "Device."


# Bytes of XML a GetParameterValuesResponse spends on one parameter besides its
# name and value (the ParameterValueStruct, Name, Value and xsi:type markup):
# what batches_by_bytes adds per name to estimate the answer's size.
PER_VALUE_MARKUP = 96
# Bytes a parameter's value is assumed to take before it is read: most are
# booleans, counters, short strings.
ASSUMED_VALUE_BYTES = 24


def batches_by_bytes(names: list[str], budget: int) -> list[list[str]]:
    """``names`` cut into GetParameterValues batches whose answers should each fit in
    about ``budget`` bytes: a CPE's limit is on the envelope it must build, not on
    a count of names, and names of a deep table are three times a flat one's."""
    batches: list[list[str]] = []
    batch: list[str] = []
    size = 0
    for name in names:
        cost = len(name) + PER_VALUE_MARKUP + ASSUMED_VALUE_BYTES
        if batch and size + cost > budget:
            batches.append(batch)
            batch, size = [], 0
        batch.append(name)
        size += cost
    if batch:
        batches.append(batch)
    return batches


def discover(
    path: str,
    batch_size: int,
    types: dict[str, str] | None = None,
    values: dict[str, m.ParameterValueStruct] | None = None,
    *,
    batch_bytes: int | None = None,
) -> Plan:
    """Learn the names under ``path`` (whole tree when it is a root), then their values,
    in as few round trips as the CPE allows.

    First one GetParameterNames(path, NextLevel=false): the names, which
    parameters are writable, the objects. Then one GetParameterValues of the
    partial path ``path`` itself (TR-069 A.3.2.2: a path ending in "." names
    every parameter below it): every value and type in one exchange. A CPE
    that faults the partial-path read (9005 and the like, or 9004 for a tree
    too big for one envelope) has the names it listed read in batches of about
    ``batch_bytes`` bytes of answer each (``batch_size`` names when it is None).

    CPEs that refuse GetParameterNames on ``path`` (too big, or plain
    unsupported) are walked object by object: NextLevel=true on ``path``, then
    NextLevel=false on each child object, descending one more level wherever a
    child refuses too. ``types`` and ``values``, when given, are filled with
    the xsd type and the value of each parameter read.

    Nothing of the answers is kept here but the names, compressed, for the
    batches should the partial read be refused: the session driver records
    each answer as it comes, so a session in flight holds no tree.
    """
    names: list[str] = []
    objects = 0
    rpcs = 1
    read = 0
    skipped: list[str] = []
    listed = 0

    def walk(obj: str, allow_seed: bool) -> Generator[m.Message, m.Message, None]:
        nonlocal objects, rpcs, listed
        rpcs += 1
        resp = yield m.GetParameterNames(parameter_path=obj, next_level=False)
        if not isinstance(resp, m.Fault):
            infos = expect(resp, m.GetParameterNamesResponse).parameter_list
            params = [i.name for i in infos if not i.name.endswith(".")]
            listed += len(params)
            names.extend(params)
            objects += len(infos) - len(params)
            return
        rpcs += 1
        resp = yield m.GetParameterNames(parameter_path=obj, next_level=True)
        if isinstance(resp, m.Fault):
            if allow_seed and obj in ROOT_CHILDREN:
                for child in ROOT_CHILDREN[obj]:
                    yield from walk(f"{obj}{child}.", allow_seed=False)
            return
        for info in expect(resp, m.GetParameterNamesResponse).parameter_list:
            if info.name.endswith("."):
                if info.name != obj:
                    objects += 1
                    yield from walk(info.name, allow_seed=False)
            else:
                listed += 1
                names.append(info.name)

    yield from walk(path, allow_seed=True)
    # the names are needed again only if the partial read is refused: held
    # compressed meanwhile (a tenth of the list's size) while the CPE builds its answer
    packed = zlib.compress("\n".join(names).encode(), 1)
    names.clear()
    whole = yield m.GetParameterValues(parameter_names=[path])
    partial_ok = not isinstance(whole, m.Fault)
    if partial_ok:
        read = _take_values(whole, types, values)
    # this frame lives on while the CPE answers the next request: not a tree in it
    del whole
    if not partial_ok:
        text = zlib.decompress(packed).decode()
        read, skipped, value_rpcs = yield from read_values(
            text.split("\n") if text else [], batch_size, types, values, batch_bytes=batch_bytes
        )
        rpcs += value_rpcs
    return {
        "path": path,
        "parameters": listed,
        "objects": objects,
        "values": read,
        "skipped": skipped,
        "rpcs": rpcs,
        "partialPath": partial_ok,
    }


def _take_values(
    response: m.Message,
    types: dict[str, str] | None,
    values: dict[str, m.ParameterValueStruct] | None,
) -> int:
    """How many values ``response`` read, after filling ``types`` and ``values``."""
    got = expect(response, m.GetParameterValuesResponse).parameter_list
    if types is not None:
        types.update((v.name, v.xsd_type) for v in got)
    if values is not None:
        values.update((v.name, v) for v in got)
    return len(got)


def read_values(
    names: list[str],
    batch_size: int,
    types: dict[str, str] | None = None,
    values: dict[str, m.ParameterValueStruct] | None = None,
    *,
    batch_bytes: int | None = None,
) -> Generator[m.Message, m.Message, tuple[int, list[str], int]]:
    """GetParameterValues in batches (of ``batch_bytes`` estimated answer bytes when
    given, else of ``batch_size`` names); a refused batch is split until the bad
    names are found.

    One unreadable parameter must not cost the whole tree: CPEs fault a batch
    with 9005 for a single name they list but cannot read.
    """
    if batch_bytes is not None:
        pending = batches_by_bytes(names, batch_bytes)
    else:
        pending = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    read = 0
    skipped: list[str] = []
    rpcs = 0
    while pending:
        batch = pending.pop(0)
        rpcs += 1
        resp = yield m.GetParameterValues(parameter_names=batch)
        if isinstance(resp, m.Fault):
            if len(batch) == 1:
                skipped.append(batch[0])
            else:
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
            continue
        read += _take_values(resp, types, values)
        del resp
    return read, skipped, rpcs
