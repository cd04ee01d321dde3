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


def discover(
    path: str,
    batch_size: int,
    types: dict[str, str] | None = None,
    values: dict[str, m.ParameterValueStruct] | None = None,
) -> Plan:
    """Learn the names under ``path`` (whole tree when it is a root), then their values.

    First one GetParameterNames(path, NextLevel=false). CPEs that refuse that
    (too big, or plain unsupported) are walked object by object: NextLevel=true
    on ``path``, then NextLevel=false on each child object, descending one
    more level wherever a child refuses too. ``types`` and ``values``, when
    given, are filled with the xsd type and the value of each parameter read.
    """
    names: list[str] = []
    objects = 0
    rpcs = 0

    def walk(obj: str, allow_seed: bool) -> Generator[m.Message, m.Message, None]:
        nonlocal objects, rpcs
        rpcs += 1
        resp = yield m.GetParameterNames(parameter_path=obj, next_level=False)
        if not isinstance(resp, m.Fault):
            infos = expect(resp, m.GetParameterNamesResponse).parameter_list
            names.extend(i.name for i in infos if not i.name.endswith("."))
            objects += sum(1 for i in infos if i.name.endswith("."))
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
                names.append(info.name)

    yield from walk(path, allow_seed=True)
    read, skipped, value_rpcs = yield from read_values(names, batch_size, types, values)
    return {
        "path": path,
        "parameters": len(names),
        "objects": objects,
        "values": read,
        "skipped": skipped,
        "rpcs": rpcs + value_rpcs,
    }


def read_values(
    names: list[str],
    batch_size: int,
    types: dict[str, str] | None = None,
    values: dict[str, m.ParameterValueStruct] | None = None,
) -> Generator[m.Message, m.Message, tuple[int, list[str], int]]:
    """GetParameterValues in batches; a refused batch is split until the bad names are found.

    One unreadable parameter must not cost the whole tree: CPEs fault a batch
    with 9005 for a single name they list but cannot read.
    """
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
        got = expect(resp, m.GetParameterValuesResponse).parameter_list
        read += len(got)
        if types is not None:
            types.update((v.name, v.xsd_type) for v in got)
        if values is not None:
            values.update((v.name, v) for v in got)
    return read, skipped, rpcs
