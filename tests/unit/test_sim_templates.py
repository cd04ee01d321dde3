"""The simulator's data-model templates: generated from the BBF XML, loadable, coherent."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cpe_simulator.datamodel import (
    SCHEMAS_DIR,
    Identity,
    Template,
    check_value,
    load_template,
    pattern_of,
)
from cpe_simulator.tree import ParameterTree

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "schemas" / "bbf"
XSD_TYPES = {
    "xsd:string",
    "xsd:boolean",
    "xsd:unsignedInt",
    "xsd:int",
    "xsd:unsignedLong",
    "xsd:long",
    "xsd:dateTime",
    "xsd:base64",
    "xsd:hexBinary",
    "xsd:decimal",
}
COUNTS = {"tr181-gateway": (900, 1300), "tr098-gateway": (400, 800)}


def _doc(name: str) -> dict:
    return json.loads((SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_templates", SCHEMAS_DIR / "generate_templates.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _tree(template: Template, serial: str = "SIM00000001") -> ParameterTree:
    return ParameterTree(
        template,
        Identity.from_serial(serial),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url="http://127.0.0.1:30001/cr",
    )


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_in_range(name: str) -> None:
    doc = _doc(name)
    low, high = COUNTS[name]
    assert low <= len(doc["parameters"]) <= high
    assert load_template(name).parameter_count == len(doc["parameters"])
    # A fresh device reports exactly the template's parameters.
    assert len(_tree(load_template(name)).get_parameter_values([""])) == len(doc["parameters"])


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_header_and_root(name: str) -> None:
    doc = _doc(name)
    assert doc["model"] == name
    expected_root, expected_model = {
        "tr181-gateway": ("Device.", "Device:2.17"),
        "tr098-gateway": ("InternetGatewayDevice.", "InternetGatewayDevice:1.14"),
    }[name]
    assert doc["root"] == expected_root and doc["data_model"] == expected_model
    assert all(row[0].startswith(expected_root) for row in doc["parameters"])
    assert all(path.startswith(expected_root) for path, _w in doc["objects"])


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_types_are_cwmp_types(name: str) -> None:
    doc = _doc(name)
    assert {row[1] for row in doc["parameters"]} <= XSD_TYPES
    for table in doc["multi_instance"].values():
        assert {row[1] for row in table["parameters"]} <= XSD_TYPES


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_writable_default_parses_as_its_type(name: str) -> None:
    template = load_template(name)
    bad = []
    for path, xsd_type, writable, _default in _doc(name)["parameters"]:
        obj, _, leaf = path.rpartition(".")
        pdef = template.objects[pattern_of(obj + ".")].params_by_name[leaf]
        assert pdef.xsd_type == xsd_type
        if writable and check_value(pdef, template.defaults.get(path, pdef.default)) == 9006:
            bad.append(path)
    # Defaults of rows the ACS creates with AddObject, too.
    for obj in template.objects.values():
        bad += [obj.pattern + p.name for p in obj.params if check_value(p, p.default) == 9006]
    assert bad == []


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_fresh_device_values_satisfy_the_model(name: str) -> None:
    """Identity-derived and template values meet type, enumeration, range and size."""
    tree = _tree(load_template(name))
    bad = []
    for pvs in tree.get_parameter_values([""]):
        real = tree.value(pvs.name)
        pdef = tree._param(pvs.name)
        assert pdef is not None
        if check_value(pdef, real, tree._enum_ref_value(pvs.name, pdef)) is not None:
            bad.append((pvs.name, real))
    assert bad == []


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_identity_and_forced_inform_paths_exist(name: str) -> None:
    doc = _doc(name)
    params = {row[0] for row in doc["parameters"]}
    assert set(doc["identity"]) <= params
    assert set(doc["forced_inform"]) <= params
    root = doc["root"]
    for leaf in (
        "SerialNumber",
        "ManufacturerOUI",
        "ProductClass",
        "Manufacturer",
        "SoftwareVersion",
    ):
        assert root + "DeviceInfo." + leaf in doc["identity"]
    for leaf in ("URL", "ConnectionRequestURL", "ConnectionRequestUsername"):
        assert root + "ManagementServer." + leaf in doc["identity"]
    for leaf in ("HardwareVersion", "SoftwareVersion", "ProvisioningCode"):
        assert root + "DeviceInfo." + leaf in doc["forced_inform"]
    assert root + "ManagementServer.ParameterKey" in doc["forced_inform"]
    assert any(
        path.endswith("MACAddress") and key.startswith("mac:")
        for path, key in doc["identity"].items()
    )


def test_tr181_gateway_shape() -> None:
    doc = _doc("tr181-gateway")
    objects = dict((path, w) for path, w in doc["objects"])
    for n in (1, 2, 3, 4):
        assert f"Device.Ethernet.Interface.{n}." in objects
        assert f"Device.WiFi.SSID.{n}." in objects
        assert f"Device.WiFi.AccessPoint.{n}.Security." in objects
    for n in range(1, 9):
        assert f"Device.Hosts.Host.{n}." in objects
    assert "Device.WiFi.Radio.2." in objects and "Device.WiFi.Radio.3." not in objects
    assert "Device.DHCPv4.Server.Pool.1." in objects
    # An empty, writable table the ACS fills with AddObject.
    assert objects["Device.NAT.PortMapping."] is True
    assert not any(p.startswith("Device.NAT.PortMapping.1") for p in objects)
    mapping = doc["multi_instance"]["Device.NAT.PortMapping.{i}."]
    assert mapping["writable"] is True
    names = {row[0] for row in mapping["parameters"]}
    assert {"Enable", "ExternalPort", "InternalClient", "Protocol"} <= names
    # Read-only tables are not writable.
    assert objects["Device.Hosts.Host."] is False
    assert doc["multi_instance"]["Device.Hosts.Host.{i}."]["writable"] is False
    params = {row[0]: row for row in doc["parameters"]}
    assert params["Device.ManagementServer.PeriodicInformInterval"][1:] == [
        "xsd:unsignedInt",
        True,
        "3600",
    ]
    assert params["Device.DeviceInfo.UpTime"][1:3] == ["xsd:unsignedInt", False]
    assert params["Device.ManagementServer.URL"][2] is True
    # dataType refs resolve to their base type (MACAddress -> string).
    assert params["Device.Ethernet.Interface.1.MACAddress"][1] == "xsd:string"
    assert doc["facets"]["Device.DeviceInfo.UpTime"]["active_notify"] == "canDeny"


def test_tr098_gateway_shape() -> None:
    doc = _doc("tr098-gateway")
    objects = {path for path, _w in doc["objects"]}
    lan = "InternetGatewayDevice.LANDevice.1."
    assert {
        lan + "WLANConfiguration.1.",
        lan + "WLANConfiguration.2.",
        lan + "LANHostConfigManagement.",
    } <= objects
    wan_ip = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1."
    assert wan_ip in objects
    assert wan_ip + "ExternalIPAddress" in doc["forced_inform"]
    assert "InternetGatewayDevice.DeviceSummary" in doc["forced_inform"]
    params = {row[0]: row for row in doc["parameters"]}
    # This vendor writes booleans as 1/0, as many TR-098 gateways do.
    assert params["InternetGatewayDevice.ManagementServer.PeriodicInformEnable"][3] == "1"


def test_load_template_is_shared_and_interned() -> None:
    first = load_template("tr181-gateway")
    assert load_template("tr181-gateway") is first
    a, b = _tree(first, "A1"), _tree(first, "B2")
    assert a.template is b.template
    # Definitions and their strings exist once per process, not per device.
    info = first.objects["Device.DeviceInfo."]
    assert all(sys.intern(p.name) is p.name for p in info.params)
    assert all(sys.intern(k) is k for k in first.defaults)
    assert a._param("Device.DeviceInfo.SerialNumber") is b._param("Device.DeviceInfo.SerialNumber")
    with pytest.raises(ValueError):
        load_template("tr999-nothing")


def test_identity_from_serial_is_stable_and_distinct() -> None:
    one = Identity.from_serial("SIM00000001")
    assert Identity.from_serial("SIM00000001") == one
    other = Identity.from_serial("SIM00000002")
    assert one.mac(0) != other.mac(0)
    assert one.mac(1).startswith("ac:de:48:")
    assert len({one.mac(n) for n in range(16)}) == 16
    assert one.ssid(1).startswith("Gateway-") and one.ssid(2).endswith("-5G")
    assert one.wan_ip().startswith("100.") and one.wan_ip() != other.wan_ip()
    assert one.value("serial_number") == "SIM00000001"
    assert one.value("mac:3") == one.mac(3)
    assert one.value("nothing") is None
    assert Identity.from_serial("X", oui="00D09E").mac(0).startswith("00:d0:9e:")


@pytest.mark.skipif(not SOURCE.is_dir(), reason="BBF XML not available")
def test_committed_templates_match_a_fresh_generation(tmp_path: Path) -> None:
    generator = _generator()
    assert generator.main(["--source", str(SOURCE), "--out", str(tmp_path)]) == 0
    for name in COUNTS:
        fresh = (tmp_path / f"{name}.json").read_text(encoding="utf-8")
        committed = (SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert fresh == committed, f"{name}.json is stale: run schemas/generate_templates.py"
