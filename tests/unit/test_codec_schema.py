"""Every message the codec emits validates against the official CWMP XSDs.

Each message class in ``messages.MESSAGE_TYPES`` (and Fault, with every ACS
and CPE fault code) is serialized with realistic values and validated with
:func:`tests.xsd.validate_envelope` against the schema of each CWMP namespace
that declares it: cwmp-1-0, cwmp-1-1, and cwmp-1-2 (checked against both
cwmp-1-2.xsd and cwmp-1-4.xsd).  Messages a version does not define are
skipped, and a separate test pins which versions define what.
"""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest

from acs.cwmp import faults
from acs.cwmp import messages as m
from acs.cwmp.soap import (
    CWMP_NS_1_0,
    CWMP_NS_1_1,
    CWMP_NS_1_2,
    Envelope,
    serialize_envelope,
)
from tests import xsd

T0 = datetime(2024, 5, 17, 8, 30, 12, tzinfo=UTC)
T1 = datetime(2024, 5, 17, 10, 31, 2, tzinfo=timezone(timedelta(hours=2)))  # 08:31:02Z
T2 = datetime(2024, 5, 17, 8, 31, 45, tzinfo=UTC)

TR181_PARAMS = [
    m.ParameterValueStruct("Device.RootDataModelVersion", "2.17"),
    m.ParameterValueStruct("Device.DeviceInfo.HardwareVersion", "HW-2.1"),
    m.ParameterValueStruct("Device.DeviceInfo.SoftwareVersion", "4.2.1-r17"),
    m.ParameterValueStruct("Device.DeviceInfo.ProvisioningCode", ""),
    m.ParameterValueStruct("Device.DeviceInfo.UpTime", "86400", "xsd:unsignedInt"),
    m.ParameterValueStruct("Device.ManagementServer.ParameterKey", "cfg-0042"),
    m.ParameterValueStruct(
        "Device.ManagementServer.ConnectionRequestURL", "http://203.0.113.7:7547/cr/9f2c"
    ),
    m.ParameterValueStruct("Device.ManagementServer.PeriodicInformEnable", "true", "xsd:boolean"),
    m.ParameterValueStruct(
        "Device.ManagementServer.PeriodicInformTime", "2024-01-01T00:00:00Z", "xsd:dateTime"
    ),
    m.ParameterValueStruct("Device.IP.Interface.1.IPv4Address.1.IPAddress", "203.0.113.7"),
    m.ParameterValueStruct("Device.X_ACME_Note", "a < b & \"c\" > 'd' — ünïcødé"),
    m.ParameterValueStruct(
        "Device.Ethernet.Interface.1.Stats.BytesSent", "18446744073709551615", "xsd:unsignedLong"
    ),
    m.ParameterValueStruct("Device.X_ACME_Offset", "-5", "xsd:int"),
    m.ParameterValueStruct("Device.X_ACME_Blob", "AAECAwQ=", "xsd:base64Binary"),
]

DEVICE_ID = m.DeviceIdStruct("ACME Networks", "00D09E", "HGW-4000", "AC4000-19B7X2")

OP_RESULT = m.OpResultStruct(
    uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    deployment_unit_ref="Device.SoftwareModules.DeploymentUnit.2",
    version="1.0.3",
    current_state="Installed",
    resolved=True,
    execution_unit_ref_list="Device.SoftwareModules.ExecutionUnit.4",
    start_time=T0,
    complete_time=T2,
    fault=m.FaultStruct(0, ""),
)

# One realistic instance of every message class (keys are element names).
SAMPLES: dict[str, m.Message] = {
    "Inform": m.Inform(
        device_id=DEVICE_ID,
        events=[
            m.EventStruct("1 BOOT"),
            m.EventStruct("M Reboot", "reboot-77"),
            m.EventStruct("4 VALUE CHANGE"),
        ],
        max_envelopes=1,
        current_time=T0,
        retry_count=2,
        parameter_list=TR181_PARAMS,
    ),
    "InformResponse": m.InformResponse(max_envelopes=1),
    "TransferComplete": m.TransferComplete(
        command_key="fw-4.2.1",
        fault=m.FaultStruct(9010, "Download failed: HTTP 404"),
        start_time=T0,
        complete_time=T2,
    ),
    "TransferCompleteResponse": m.TransferCompleteResponse(),
    "AutonomousTransferComplete": m.AutonomousTransferComplete(
        announce_url="http://announce.example.net/",
        transfer_url="http://fw.example.net/img.bin",
        is_download=True,
        file_type="1 Firmware Upgrade Image",
        file_size=31457280,
        target_file_name="img.bin",
        fault=m.FaultStruct(0, ""),
        start_time=T0,
        complete_time=T2,
    ),
    "AutonomousTransferCompleteResponse": m.AutonomousTransferCompleteResponse(),
    "RequestDownload": m.RequestDownload(
        file_type="2 Web Content",
        file_type_arg=[m.ArgStruct("Version", "4.2.1"), m.ArgStruct("Lang", "de")],
    ),
    "RequestDownloadResponse": m.RequestDownloadResponse(),
    "Kicked": m.Kicked(
        command="reboot",
        referer="http://portal.example.net/self-care",
        arg="now",
        next="http://portal.example.net/done",
    ),
    "KickedResponse": m.KickedResponse(next_url="http://portal.example.net/done?ok=1"),
    "DUStateChangeComplete": m.DUStateChangeComplete(
        results=[
            OP_RESULT,
            m.OpResultStruct(
                uuid="6ba7b811-9dad-11d1-80b4-00c04fd430c8",
                deployment_unit_ref="",
                version="",
                current_state="Failed",
                resolved=False,
                execution_unit_ref_list="",
                start_time=None,
                complete_time=None,
                fault=m.FaultStruct(9026, "Duplicate DU"),
            ),
        ],
        command_key="du-42",
    ),
    "DUStateChangeCompleteResponse": m.DUStateChangeCompleteResponse(),
    "AutonomousDUStateChangeComplete": m.AutonomousDUStateChangeComplete(
        results=[
            m.AutonOpResultStruct(
                uuid=OP_RESULT.uuid,
                deployment_unit_ref=OP_RESULT.deployment_unit_ref,
                version="1.0.4",
                current_state="Installed",
                resolved=True,
                execution_unit_ref_list="Device.SoftwareModules.ExecutionUnit.4",
                start_time=T0,
                complete_time=T2,
                fault=m.FaultStruct(0, ""),
                operation_performed="Update",
            )
        ],
    ),
    "AutonomousDUStateChangeCompleteResponse": m.AutonomousDUStateChangeCompleteResponse(),
    "GetRPCMethods": m.GetRPCMethods(),
    "GetRPCMethodsResponse": m.GetRPCMethodsResponse(
        method_list=[
            "GetRPCMethods",
            "SetParameterValues",
            "GetParameterValues",
            "GetParameterNames",
            "Reboot",
            "Download",
            "X_ACME_Ping",
        ],
    ),
    "GetParameterNames": m.GetParameterNames(parameter_path="Device.DeviceInfo.", next_level=True),
    "GetParameterNamesResponse": m.GetParameterNamesResponse(
        parameter_list=[
            m.ParameterInfoStruct("Device.DeviceInfo.Manufacturer", False),
            m.ParameterInfoStruct("Device.DeviceInfo.ProvisioningCode", True),
            m.ParameterInfoStruct("Device.DeviceInfo.VendorLogFile.", False),
        ]
    ),
    "GetParameterValues": m.GetParameterValues(
        parameter_names=[
            "Device.DeviceInfo.",
            "Device.ManagementServer.PeriodicInformInterval",
        ]
    ),
    "GetParameterValuesResponse": m.GetParameterValuesResponse(parameter_list=TR181_PARAMS),
    "SetParameterValues": m.SetParameterValues(
        parameter_list=[
            m.ParameterValueStruct(
                "Device.ManagementServer.PeriodicInformInterval", "3600", "xsd:unsignedInt"
            ),
            m.ParameterValueStruct("Device.WiFi.SSID.1.SSID", "Home & <Garden>"),
            m.ParameterValueStruct("Device.WiFi.Radio.1.Enable", "false", "xsd:boolean"),
        ],
        parameter_key="cfg-0043",
    ),
    "SetParameterValuesResponse": m.SetParameterValuesResponse(status=1),
    "GetParameterAttributes": m.GetParameterAttributes(
        parameter_names=[
            "Device.DeviceInfo.SoftwareVersion",
            "Device.ManagementServer.",
        ]
    ),
    "GetParameterAttributesResponse": m.GetParameterAttributesResponse(
        parameter_list=[
            m.ParameterAttributeStruct("Device.DeviceInfo.SoftwareVersion", 2, []),
            m.ParameterAttributeStruct("Device.ManagementServer.URL", 0, ["Subscriber"]),
        ]
    ),
    "SetParameterAttributes": m.SetParameterAttributes(
        parameter_list=[
            m.SetParameterAttributesStruct("Device.DeviceInfo.SoftwareVersion", True, 2, False, []),
            m.SetParameterAttributesStruct(
                "Device.WiFi.SSID.1.SSID", False, 0, True, ["Subscriber"]
            ),
        ]
    ),
    "SetParameterAttributesResponse": m.SetParameterAttributesResponse(),
    "AddObject": m.AddObject(object_name="Device.IP.Interface.", parameter_key="cfg-0044"),
    "AddObjectResponse": m.AddObjectResponse(instance_number=3, status=0),
    "DeleteObject": m.DeleteObject(object_name="Device.IP.Interface.3.", parameter_key="cfg-0045"),
    "DeleteObjectResponse": m.DeleteObjectResponse(status=0),
    "Reboot": m.Reboot(command_key="reboot-77"),
    "RebootResponse": m.RebootResponse(),
    "FactoryReset": m.FactoryReset(),
    "FactoryResetResponse": m.FactoryResetResponse(),
    "Download": m.Download(
        command_key="fw-4.2.1",
        file_type="1 Firmware Upgrade Image",
        url="https://fw.example.net/hgw4000/4.2.1.bin",
        username="cpe",
        password="s3cr3t",
        file_size=31457280,
        target_file_name="4.2.1.bin",
        delay_seconds=0,
        success_url="",
        failure_url="",
    ),
    "DownloadResponse": m.DownloadResponse(status=1, start_time=None, complete_time=None),
    "Upload": m.Upload(
        command_key="log-1",
        file_type="2 Vendor Log File",
        url="https://upload.example.net/logs/AC4000-19B7X2",
        username="",
        password="",
        delay_seconds=5,
    ),
    "UploadResponse": m.UploadResponse(status=0, start_time=T0, complete_time=T2),
    "ScheduleInform": m.ScheduleInform(delay_seconds=300, command_key="si-1"),
    "ScheduleInformResponse": m.ScheduleInformResponse(),
    "ScheduleDownload": m.ScheduleDownload(
        command_key="fw-night",
        file_type="1 Firmware Upgrade Image",
        url="https://fw.example.net/hgw4000/4.2.2.bin",
        username="",
        password="",
        file_size=31457300,
        target_file_name="",
        time_window_list=[
            m.TimeWindowStruct(3600, 7200, "3 When Idle", "", -1),
            m.TimeWindowStruct(
                86400, 90000, "4 Confirmation Needed", "A firmware update is ready. Install now?", 3
            ),
        ],
    ),
    "ScheduleDownloadResponse": m.ScheduleDownloadResponse(),
    "CancelTransfer": m.CancelTransfer(command_key="fw-night"),
    "CancelTransferResponse": m.CancelTransferResponse(),
    "GetQueuedTransfers": m.GetQueuedTransfers(),
    "GetQueuedTransfersResponse": m.GetQueuedTransfersResponse(
        transfer_list=[
            m.QueuedTransferStruct("fw-4.2.1", 2),
            m.QueuedTransferStruct("log-1", 1),
        ]
    ),
    "GetAllQueuedTransfers": m.GetAllQueuedTransfers(),
    "GetAllQueuedTransfersResponse": m.GetAllQueuedTransfersResponse(
        transfer_list=[
            m.AllQueuedTransferStruct(
                "fw-4.2.1", 2, True, "1 Firmware Upgrade Image", 31457280, "4.2.1.bin"
            ),
            m.AllQueuedTransferStruct("cfg-1", 1, False, "3 Vendor Configuration File", 0, ""),
        ]
    ),
    "ChangeDUState": m.ChangeDUState(
        operations=[
            m.InstallOpStruct(
                url="https://apps.example.net/speedtest-1.0.3.ipk",
                uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                username="",
                password="",
                execution_env_ref="Device.SoftwareModules.ExecEnv.1",
            ),
            m.UpdateOpStruct(
                uuid="6ba7b812-9dad-11d1-80b4-00c04fd430c8",
                version="2.0",
                url="https://apps.example.net/vpn-2.1.ipk",
            ),
            m.UninstallOpStruct(
                uuid="6ba7b813-9dad-11d1-80b4-00c04fd430c8",
                version="0.9",
                execution_env_ref="Device.SoftwareModules.ExecEnv.1",
            ),
        ],
        command_key="du-42",
    ),
    "ChangeDUStateResponse": m.ChangeDUStateResponse(),
}

VERSIONS = {"1-0": CWMP_NS_1_0, "1-1": CWMP_NS_1_1, "1-2": CWMP_NS_1_2}

# Which CWMP namespace first defines each RPC that is not in cwmp-1-0.
FIRST_VERSION = {
    "AutonomousTransferComplete": "1-1",
    "GetAllQueuedTransfers": "1-1",
    "AutonomousDUStateChangeComplete": "1-2",
    "CancelTransfer": "1-2",
    "ChangeDUState": "1-2",
    "DUStateChangeComplete": "1-2",
    "ScheduleDownload": "1-2",
}


def _envelope(
    body: m.Message,
    ns: str,
    *,
    hold_requests: bool = False,
    session_timeout: int | None = None,
    supported_cwmp_versions: str | None = None,
    use_cwmp_version: str | None = None,
) -> bytes:
    return serialize_envelope(
        Envelope(
            body=body,
            cwmp_id="cwmp-4711",
            cwmp_ns=ns,
            hold_requests=hold_requests,
            session_timeout=session_timeout,
            supported_cwmp_versions=supported_cwmp_versions,
            use_cwmp_version=use_cwmp_version,
        )
    )


def test_samples_cover_every_message_class() -> None:
    assert set(SAMPLES) == set(m.MESSAGE_TYPES)
    for name, sample in SAMPLES.items():
        assert type(sample) is m.MESSAGE_TYPES[name]
        assert sample.element_name == name


def test_version_table_matches_the_schemas() -> None:
    """Pins which namespace defines which RPC, so the skips below are right."""
    for name in m.MESSAGE_TYPES:
        rpc = name.removesuffix("Response")
        first = FIRST_VERSION.get(rpc, "1-0")
        for version, ns in VERSIONS.items():
            expected = version >= first
            assert bool(xsd.declared_in(ns, name)) is expected, (name, version)
        assert name in xsd.schema("1-4").elements


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_message_validates(name: str, version: str) -> None:
    ns = VERSIONS[version]
    if not xsd.declared_in(ns, name):
        pytest.skip(f"{name} is not defined in cwmp-{version}.xsd")
    data = _envelope(SAMPLES[name], ns)
    xsd.validate_envelope(data)
    assert f"<cwmp:{name}".encode() in data and f'xmlns:cwmp="{ns}"'.encode() in data


def test_cwmp_1_4_headers_validate() -> None:
    inform = SAMPLES["Inform"]
    data = _envelope(inform, CWMP_NS_1_2, supported_cwmp_versions="1.0,1.1,1.2,1.3,1.4")
    xsd.validate_envelope(data)
    assert b"SupportedCWMPVersions>1.0,1.1,1.2,1.3,1.4<" in data
    data = _envelope(
        m.InformResponse(),
        CWMP_NS_1_2,
        use_cwmp_version="1.4",
        session_timeout=60,
        hold_requests=False,
    )
    xsd.validate_envelope(data)
    assert b'UseCWMPVersion soap-env:mustUnderstand="1">1.4<' in data
    assert b"SessionTimeout>60<" in data


@pytest.mark.parametrize("ns", list(VERSIONS.values()))
def test_hold_requests_header_validates(ns: str) -> None:
    data = _envelope(m.InformResponse(), ns, hold_requests=True)
    xsd.validate_envelope(data)
    assert b"HoldRequests" in data
    # NoMoreRequests (deprecated) is declared in no schema, so it is never sent
    assert not xsd.declared_in(ns, "NoMoreRequests")
    data = serialize_envelope(Envelope(body=m.GetRPCMethods(), cwmp_ns=ns, no_more_requests=True))
    assert b"NoMoreRequests" not in data


def test_envelope_without_cwmp_id_validates() -> None:
    xsd.validate_envelope(serialize_envelope(Envelope(body=m.GetRPCMethods())))


# ---------------------------------------------------------------- faults

ACS_CODES = list(range(8000, 8007))
CPE_CODES = list(range(9000, 9033))


# cwmp-1-0.xsd enumerates 8000-8005 and 9000-9013 (plus the vendor ranges);
# cwmp-1-1.xsd and later accept 8000-8799 and 9000-9799.
NOT_IN_1_0 = {8006, *range(9014, 9033)}


@pytest.mark.parametrize("version", list(VERSIONS))
def test_every_fault_code_validates(version: str) -> None:
    ns = VERSIONS[version]
    for code in ACS_CODES + CPE_CODES + [8800, 8899, 9800, 9899]:
        if version == "1-0" and code in NOT_IN_1_0:
            continue  # see test_fault_codes_newer_than_the_namespace
        data = _envelope(m.Fault(code, faults.fault_name(code)), ns)
        xsd.validate_envelope(data)
        assert f"<FaultCode>{code}</FaultCode>".encode() in data


@pytest.mark.parametrize("version", list(VERSIONS))
def test_spv_fault_validates(version: str) -> None:
    fault = m.Fault(
        9003,
        "Invalid arguments",
        [
            m.SetParameterValuesFault("Device.WiFi.SSID.1.SSID", 9007, "Invalid parameter value"),
            m.SetParameterValuesFault(
                "Device.DeviceInfo.Manufacturer", 9008, "Attempt to set a non-writable parameter"
            ),
            m.SetParameterValuesFault("Device.X_ACME_Nope", 9005, ""),
        ],
    )
    data = _envelope(fault, VERSIONS[version])
    xsd.validate_envelope(data)
    assert data.count(b"<SetParameterValuesFault>") == 3
    assert b"<faultcode>Client</faultcode>" in data


def test_fault_codes_newer_than_the_namespace() -> None:
    """Pins the schemas: exactly these codes are missing from cwmp-1-0."""
    rejected = set()
    for code in ACS_CODES + CPE_CODES:
        try:
            xsd.validate_envelope(_envelope(m.Fault(code, "x"), CWMP_NS_1_0))
        except AssertionError as exc:
            assert "FaultCode" in str(exc)
            rejected.add(code)
    assert rejected == NOT_IN_1_0


# ---------------------------------------------------------------- the validator itself


def test_validator_rejects_fields_out_of_order() -> None:
    good = _envelope(SAMPLES["AddObject"], CWMP_NS_1_2)
    bad = good.replace(
        b"<ObjectName>Device.IP.Interface.</ObjectName><ParameterKey>cfg-0044</ParameterKey>",
        b"<ParameterKey>cfg-0044</ParameterKey><ObjectName>Device.IP.Interface.</ObjectName>",
    )
    assert bad != good
    with pytest.raises(AssertionError, match="AddObject.*cwmp-1-2.xsd"):
        xsd.validate_envelope(bad)


def test_validator_rejects_missing_required_field() -> None:
    good = _envelope(SAMPLES["Reboot"], CWMP_NS_1_0)
    bad = good.replace(b"<CommandKey>reboot-77</CommandKey>", b"")
    assert bad != good
    with pytest.raises(AssertionError, match="Reboot"):
        xsd.validate_envelope(bad)


def test_validator_rejects_bad_types() -> None:
    good = _envelope(SAMPLES["AddObjectResponse"], CWMP_NS_1_1)
    bad = good.replace(b"<InstanceNumber>3<", b"<InstanceNumber>three<")
    with pytest.raises(AssertionError, match="InstanceNumber|three"):
        xsd.validate_envelope(bad)
    bad = good.replace(b"<Status>0<", b"<Status>7<")
    with pytest.raises(AssertionError):
        xsd.validate_envelope(bad)


def test_validator_rejects_1_4_header_in_older_namespace() -> None:
    data = _envelope(m.InformResponse(), CWMP_NS_1_0, use_cwmp_version="1.4")
    with pytest.raises(AssertionError, match="UseCWMPVersion.*not declared"):
        xsd.validate_envelope(data)


def test_validator_rejects_use_cwmp_version_without_must_understand() -> None:
    good = _envelope(m.InformResponse(), CWMP_NS_1_2, use_cwmp_version="1.4")
    bad = good.replace(
        b'<cwmp:UseCWMPVersion soap-env:mustUnderstand="1">', b"<cwmp:UseCWMPVersion>"
    )
    assert bad != good
    with pytest.raises(AssertionError, match="UseCWMPVersion.*cwmp-1-4"):
        xsd.validate_envelope(bad)


def test_validator_rejects_rpc_newer_than_namespace() -> None:
    data = _envelope(SAMPLES["CancelTransfer"], CWMP_NS_1_1)
    with pytest.raises(AssertionError, match="CancelTransfer.*not declared"):
        xsd.validate_envelope(data)


def test_validator_rejects_non_cwmp_body_and_bad_envelope() -> None:
    good = _envelope(m.GetRPCMethods(), CWMP_NS_1_0)
    with pytest.raises(AssertionError, match="not in a CWMP namespace"):
        xsd.validate_envelope(good.replace(b"<cwmp:GetRPCMethods/>", b"<GetRPCMethods/>"))
    with pytest.raises(AssertionError, match="not.*CWMP namespace"):
        xsd.validate_envelope(good.replace(b"urn:dslforum-org:cwmp-1-0", b"urn:x:cwmp-1-9"))
    two_bodies = good.replace(b"<soap-env:Body>", b"<soap-env:Body/><soap-env:Body>")
    with pytest.raises(AssertionError, match="SOAP envelope"):
        xsd.validate_envelope(two_bodies)


def test_validator_rejects_unknown_xsi_type() -> None:
    # "xsd:base64" (TR-069's name for the base64 type) is no XML Schema type:
    # the schemas cannot resolve it, so a strict validator must complain.
    body = m.GetParameterValuesResponse([m.ParameterValueStruct("Device.X", "AA==", "xsd:base64")])
    with pytest.raises(AssertionError, match="base64"):
        xsd.validate_envelope(_envelope(body, CWMP_NS_1_2))
    body.parameter_list[0].xsd_type = "xsd:base64Binary"
    xsd.validate_envelope(_envelope(body, CWMP_NS_1_2))


def test_schema_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while loading schemas")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for version in ("1-0", "1-2"):
        fresh = xsd._load(str(xsd.SCHEMA_DIR / f"cwmp-{version}.xsd"))
        assert "Inform" in fresh.elements
    fresh = xsd._load(xsd._cwmp_1_4_source(), base_url=str(xsd.SCHEMA_DIR))
    assert "UseCWMPVersion" in fresh.elements


# ---------------------------------------------------------------- acs.cwmp.faults


def _documented_codes(path: str, type_name: str) -> dict[int, str]:
    """``* NNNN - name`` lines of a simpleType's documentation in an XSD."""
    text = (xsd.SCHEMA_DIR / path).read_text(encoding="utf-8")
    start = text.index(f'<xs:simpleType name="{type_name}">')
    doc = text[start : text.index("</xs:documentation>", start)]
    found = re.findall(r"\*\s*(\d{4})\s*-\s*(.+?)\s*$", doc, flags=re.MULTILINE)
    return {int(code): name for code, name in found}


def test_fault_names_match_the_schema_documentation() -> None:
    assert faults.ACS_FAULTS == _documented_codes("cwmp-1-4.xsd", "ACSFaultCodeType")
    assert faults.CPE_FAULTS == _documented_codes("cwmp-1-2.xsd", "CPEFaultCodeType")
    assert sorted(faults.ACS_FAULTS) == ACS_CODES
    assert sorted(faults.CPE_FAULTS) == CPE_CODES


def test_fault_name() -> None:
    assert faults.fault_name(faults.ACS_VERSION_INCOMPATIBLE) == "ACS version incompatible with CPE"
    assert faults.fault_name(8000) == "Method not supported"
    assert faults.fault_name(faults.NON_WRITABLE_PARAMETER) == (
        "Attempt to set a non-writable parameter"
    )
    assert faults.fault_name(9032).startswith("Invalid Deployment Unit Update")
    for code in (8800, 8850, 8899, 9800, 9899):
        assert faults.fault_name(code) == "Vendor fault"
        assert faults.is_vendor_fault(code)
    for code in (8799, 8900, 9799, 9900, 0, 7999):
        assert faults.fault_name(code) != "Vendor fault"
        assert not faults.is_vendor_fault(code)
    assert faults.fault_name(8007) == "Unknown ACS fault"
    assert faults.fault_name(9033) == "Unknown CPE fault"
    assert faults.fault_name(42) == "Unknown fault"
    assert faults.is_acs_fault(8899) and not faults.is_acs_fault(9000)
    assert faults.is_cpe_fault(9000) and not faults.is_cpe_fault(8006)
    # the named constants agree with the table
    constants = {v for k, v in vars(faults).items() if k.isupper() and isinstance(v, int)}
    assert constants == set(faults.FAULT_NAMES)
