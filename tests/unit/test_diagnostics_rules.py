"""acs.core.diagnostics without a socket: what a test sets, how its object is read."""

from __future__ import annotations

from typing import Any

import pytest

from acs.core import diagnostics as d
from acs.core import tasks
from acs.core.plans import PlanFault
from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, serialize_envelope
from tests import xsd

ROOTS = ("Device.", "InternetGatewayDevice.")

EXAMPLES: dict[str, dict[str, Any]] = {
    "ping": {"host": "192.0.2.1", "count": 4, "timeout": 1000, "dataBlockSize": 64, "dscp": 8},
    "traceroute": {"host": "example.com", "count": 3, "maxHopCount": 30, "timeout": 5000},
    "download": {"url": "http://192.0.2.1/file.bin", "dscp": 0, "ethernetPriority": 0},
    "upload": {"url": "http://192.0.2.1/up", "testFileLength": 5_000_000},
    "udpEcho": {"host": "192.0.2.1", "port": 7, "count": 2, "interTransmissionTime": 10},
    "serverSelection": {"hosts": ["a.example", "b.example"], "protocol": "ICMP", "count": 2},
}


def parsed(test: str, **args: Any) -> d.DiagnosticsArgs:
    return tasks.validate_task("diagnostics", {"test": test, **args})  # type: ignore[return-value]


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("test", sorted(EXAMPLES))
def test_one_set_parameter_values_valid_cwmp_per_test_and_root(root: str, test: str) -> None:
    if d.OBJECTS[root][test] is None:
        with pytest.raises(tasks.InvalidTask, match=f"has no {test} diagnostics"):
            tasks.plan_for(
                1, "diagnostics", {"test": test, **EXAMPLES[test]},
                type_of=lambda _p: None, batch_size=10, root=root,
            )  # fmt: skip
        return
    plan = tasks.plan_for(
        1, "diagnostics", {"test": test, **EXAMPLES[test]},
        type_of=lambda _p: None, batch_size=10, root=root,
    )  # fmt: skip
    spv = next(plan)
    assert isinstance(spv, m.SetParameterValues)
    obj = d.object_for(test, root)
    assert all(p.name.startswith(obj) for p in spv.parameter_list)
    assert spv.parameter_list[-1] == m.ParameterValueStruct(
        obj + "DiagnosticsState", "Requested", "xsd:string"
    )
    xsd.validate_envelope(serialize_envelope(Envelope(body=spv, cwmp_id="1")))
    with pytest.raises(StopIteration) as done:
        plan.send(m.SetParameterValuesResponse(0))
    waiting = done.value.value
    assert waiting["awaitingDiagnosticsComplete"] is True and waiting["object"] == obj
    read = d.read_plan(waiting)
    gpv = next(read)
    assert gpv == m.GetParameterValues(parameter_names=[obj])
    xsd.validate_envelope(serialize_envelope(Envelope(body=gpv, cwmp_id="2")))


def test_types_come_from_each_models_own_definition() -> None:
    # TestFileLength is unsignedLong in TR-181 and unsignedInt in TR-098, whose
    # range then refuses a 5 GB test file before anything is sent
    args = parsed("upload", url="http://192.0.2.1/up", testFileLength=5_000_000_000)
    types = {p.name: p.xsd_type for p in d.request_values(args, "Device.")}
    assert types["Device.IP.Diagnostics.UploadDiagnostics.TestFileLength"] == "xsd:unsignedLong"
    with pytest.raises(ValueError, match="TestFileLength"):
        d.request_values(args, "InternetGatewayDevice.")
    hosts = d.request_values(parsed("serverSelection", hosts=["a", "b"]), "Device.")
    assert hosts[0].value == "a,b"  # a list travels comma-separated


def gpv(obj: str, **values: str) -> m.GetParameterValuesResponse:
    return m.GetParameterValuesResponse(
        [
            m.ParameterValueStruct(obj + k.replace("__", "."), v, "xsd:string")
            for k, v in values.items()
        ]
    )


def read(waiting: dict[str, Any], response: m.Message) -> dict[str, Any]:
    plan = d.read_plan(waiting)
    next(plan)
    with pytest.raises(StopIteration) as done:
        plan.send(response)
    return done.value.value


def test_a_tr098_trace_route_reads_its_hop_table_in_order() -> None:
    obj = "InternetGatewayDevice.TraceRouteDiagnostics."
    result = read(
        {"test": "traceroute", "object": obj},
        gpv(
            obj,
            DiagnosticsState="Complete",
            ResponseTime="12",
            RouteHops__2__HopHost="far.example",
            RouteHops__2__HopHostAddress="198.51.100.7",
            RouteHops__2__HopErrorCode="0",
            RouteHops__2__HopRTTimes="11,12,13",
            RouteHops__1__HopHost="gw",
            RouteHops__1__HopHostAddress="192.0.2.1",
            RouteHops__1__HopErrorCode="0",
            RouteHops__1__HopRTTimes="1,2,1",
        ),
    )
    assert result["traceroute"] == {
        "responseTime": 12,
        "hops": [
            {"hop": 1, "host": "gw", "address": "192.0.2.1", "errorCode": 0, "rtTimes": [1, 2, 1]},
            {
                "hop": 2,
                "host": "far.example",
                "address": "198.51.100.7",
                "errorCode": 0,
                "rtTimes": [11, 12, 13],
            },
        ],
    }


def test_throughput_is_test_bytes_over_bom_to_eom() -> None:
    obj = "Device.IP.Diagnostics.DownloadDiagnostics."
    result = read(
        {"test": "download", "object": obj},
        gpv(
            obj,
            DiagnosticsState="Complete",
            ROMTime="2026-12-01T10:00:00.000000Z",
            BOMTime="2026-12-01T10:00:00.500000Z",
            EOMTime="2026-12-01T10:00:02.500000Z",
            TCPOpenRequestTime="0001-01-01T00:00:00Z",  # Unknown Time
            TestBytesReceived="25000000",
            TotalBytesReceived="25001000",
        ),
    )["download"]
    assert result["seconds"] == 2.0
    assert result["throughputBps"] == 100_000_000.0  # 25 MB in 2 s: 100 Mbit/s
    assert result["tcpOpenRequestTime"] is None
    assert result["romTime"] == "2026-12-01T10:00:00Z"


def test_an_error_state_fails_with_that_state_and_keeps_what_was_read() -> None:
    obj = "Device.IP.Diagnostics.IPPing."
    plan = d.read_plan({"test": "ping", "object": obj, "requested": {"Host": "nowhere"}})
    next(plan)
    with pytest.raises(d.DiagnosticsFailed) as failed:
        plan.send(gpv(obj, DiagnosticsState="Error_CannotResolveHostName"))
    assert failed.value.string == "ping diagnostics failed: Error_CannotResolveHostName"
    assert failed.value.detail["diagnosticsState"] == "Error_CannotResolveHostName"
    assert failed.value.detail["requested"] == {"Host": "nowhere"}
    # the CPE refusing the read is its own fault, with its code
    plan = d.read_plan({"test": "ping", "object": obj})
    next(plan)
    with pytest.raises(PlanFault) as refused:
        plan.send(m.Fault(9005, "Invalid parameter name"))
    assert refused.value.code == 9005 and not isinstance(refused.value, d.DiagnosticsFailed)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"test": "ping"}, "a ping test needs host"),
        ({"test": "traceroute", "host": "h", "url": "http://x/"}, "not arguments of a traceroute"),
        ({"test": "upload", "url": "https://x/", "testFileLength": 1}, "http:// or ftp://"),
        ({"test": "ping", "host": "h", "dscp": 64}, "less than or equal to 63"),
        ({"test": "ping", "host": "h", "extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_arguments_are_refused_naming_them(args: dict[str, Any], says: str) -> None:
    with pytest.raises(tasks.InvalidTask) as bad:
        tasks.validate_task("diagnostics", args)
    assert says in str(bad.value.errors), bad.value.errors
