"""TR-143 diagnostics as a job: which object a test lives in, what the ACS sets, what it reads.

A ``diagnostics`` job runs in two sessions (TR-069 A.4.1.2 "8 DIAGNOSTICS
COMPLETE"). In the first the ACS sets the test's parameters together with
DiagnosticsState=Requested in one SetParameterValues; the CPE runs the test
after that session ends and opens a new one with the event 8 DIAGNOSTICS
COMPLETE, in which the ACS reads the whole diagnostics object
(GetParameterValues of its partial path, hop table and per-connection results
included) and turns it into the job's typed result.

Pure: the plans here only yield RPCs; the session driver and
``acs.services.diagnostics`` keep the job waiting between the two sessions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acs.core import values
from acs.core.plans import Plan, PlanFault, expect
from acs.cwmp import messages as m

COMPLETE_EVENT = "8 DIAGNOSTICS COMPLETE"

Test = Literal["ping", "traceroute", "download", "upload", "udpEcho", "serverSelection"]

# the test's object under each root; None: that data model has no such test
# (TR-098 has UDPEchoConfig, the responder, but no UDP echo client test, and no
# server selection)
OBJECTS: dict[str, dict[str, str | None]] = {
    "Device.": {
        "ping": "Device.IP.Diagnostics.IPPing.",
        "traceroute": "Device.IP.Diagnostics.TraceRoute.",
        "download": "Device.IP.Diagnostics.DownloadDiagnostics.",
        "upload": "Device.IP.Diagnostics.UploadDiagnostics.",
        "udpEcho": "Device.IP.Diagnostics.UDPEchoDiagnostics.",
        "serverSelection": "Device.IP.Diagnostics.ServerSelectionDiagnostics.",
    },
    "InternetGatewayDevice.": {
        "ping": "InternetGatewayDevice.IPPingDiagnostics.",
        "traceroute": "InternetGatewayDevice.TraceRouteDiagnostics.",
        "download": "InternetGatewayDevice.DownloadDiagnostics.",
        "upload": "InternetGatewayDevice.UploadDiagnostics.",
        "udpEcho": None,
        "serverSelection": None,
    },
}

# job argument -> the parameter it sets, per test (same name in both roots)
_PARAMETERS: dict[str, dict[str, str]] = {
    "ping": {
        "host": "Host",
        "count": "NumberOfRepetitions",
        "timeout": "Timeout",
        "dataBlockSize": "DataBlockSize",
        "dscp": "DSCP",
    },
    "traceroute": {
        "host": "Host",
        "count": "NumberOfTries",
        "timeout": "Timeout",
        "dataBlockSize": "DataBlockSize",
        "dscp": "DSCP",
        "maxHopCount": "MaxHopCount",
    },
    "download": {"url": "DownloadURL", "dscp": "DSCP", "ethernetPriority": "EthernetPriority"},
    "upload": {
        "url": "UploadURL",
        "testFileLength": "TestFileLength",
        "dscp": "DSCP",
        "ethernetPriority": "EthernetPriority",
    },
    "udpEcho": {
        "host": "Host",
        "port": "Port",
        "count": "NumberOfRepetitions",
        "timeout": "Timeout",
        "dataBlockSize": "DataBlockSize",
        "dscp": "DSCP",
        "interTransmissionTime": "InterTransmissionTime",
    },
    "serverSelection": {
        "hosts": "HostList",
        "protocol": "Protocol",
        "count": "NumberOfRepetitions",
        "timeout": "Timeout",
    },
}
# what each test cannot do without
_REQUIRED: dict[str, tuple[str, ...]] = {
    "ping": ("host",),
    "traceroute": ("host",),
    "download": ("url",),
    "upload": ("url", "testFileLength"),
    "udpEcho": ("host", "port"),
    "serverSelection": ("hosts",),
}
_ARGUMENTS = frozenset(a for params in _PARAMETERS.values() for a in params)

HostName = Field(default=None, min_length=1, max_length=256, pattern=r"^[^\s,]+$")


class DiagnosticsArgs(BaseModel):
    """A test and its arguments; each argument is the TR-143 parameter named beside it."""

    model_config = ConfigDict(extra="forbid")

    test: Test
    host: str | None = HostName  # Host
    hosts: list[str] | None = Field(default=None, min_length=1, max_length=32)  # HostList
    count: int | None = Field(default=None, ge=1, le=100)  # NumberOfRepetitions / NumberOfTries
    timeout: int | None = Field(default=None, ge=1, le=600_000)  # Timeout, milliseconds
    dataBlockSize: int | None = Field(default=None, ge=1, le=65535)
    dscp: int | None = Field(default=None, ge=0, le=63)
    maxHopCount: int | None = Field(default=None, ge=1, le=64)
    url: str | None = Field(default=None, min_length=1, max_length=256)  # Download/UploadURL
    testFileLength: int | None = Field(default=None, ge=1, le=2**63 - 1)  # per model at run time
    ethernetPriority: int | None = Field(default=None, ge=0, le=7)
    port: int | None = Field(default=None, ge=1, le=65535)
    interTransmissionTime: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["ICMP", "UDP Echo"] | None = None
    interface: str | None = Field(default=None, max_length=256)  # Interface (a path reference)

    @model_validator(mode="after")
    def _fits_the_test(self) -> DiagnosticsArgs:
        given = {a for a in _ARGUMENTS if getattr(self, a) is not None}
        foreign = sorted(given - set(_PARAMETERS[self.test]))
        if foreign:
            raise ValueError(f"not arguments of a {self.test} test: {', '.join(foreign)}")
        missing = [a for a in _REQUIRED[self.test] if getattr(self, a) is None]
        if missing:
            raise ValueError(f"a {self.test} test needs {', '.join(missing)}")
        if self.url is not None and not self.url.lower().startswith(("http://", "ftp://")):
            raise ValueError("url must be http:// or ftp:// (TR-143 transports)")
        for host in self.hosts or ():
            if not host or len(host) > 256 or any(c in host for c in ", \t\r\n"):
                raise ValueError(f"hosts: {host!r} is not a host name or address")
        return self


def object_for(test: str, root: str) -> str:
    """The test's object under ``root``; ValueError when that data model lacks it."""
    found = OBJECTS.get(root, {}).get(test)
    if found is None:
        raise ValueError(f"the {root[:-1]} data model has no {test} diagnostics")
    return found


def request_values(args: DiagnosticsArgs, root: str) -> list[m.ParameterValueStruct]:
    """The one SetParameterValues of the test: its arguments, then DiagnosticsState=Requested.

    Types come from the data model (TestFileLength is unsignedLong in TR-181,
    unsignedInt in TR-098); a value outside the model's range is refused here
    (values.InvalidValue) rather than by the CPE."""
    obj = object_for(args.test, root)
    pairs: list[tuple[str, str]] = []
    for arg, param in _PARAMETERS[args.test].items():
        given = getattr(args, arg)
        if given is not None:
            pairs.append((param, ",".join(given) if isinstance(given, list) else str(given)))
    if args.interface is not None:
        pairs.append(("Interface", args.interface))
    pairs.append(("DiagnosticsState", "Requested"))
    out = []
    for param, value in pairs:
        path = obj + param
        values.check(path, value)
        out.append(m.ParameterValueStruct(path, value, values.wire_type(path, None, None)))
    return out


def request_plan(args: DiagnosticsArgs, root: str) -> Plan:
    """First session: set the test going. Built eagerly by the caller's request_values,
    so a test the data model lacks faults the job before anything is sent."""
    structs = request_values(args, root)
    return _request(args, root, structs)


def _request(args: DiagnosticsArgs, root: str, structs: list[m.ParameterValueStruct]) -> Plan:
    resp = yield m.SetParameterValues(parameter_list=structs, parameter_key="")
    status = expect(resp, m.SetParameterValuesResponse).status
    return {
        "test": args.test,
        "object": object_for(args.test, root),
        "requested": {s.name.rpartition(".")[2]: s.value for s in structs},
        "setStatus": status,
        # the job waits for the CPE's 8 DIAGNOSTICS COMPLETE (acs.services.diagnostics)
        "awaitingDiagnosticsComplete": True,
    }


def read_plan(waiting: dict[str, Any]) -> Plan:
    """Second session: read the diagnostics object and make the typed result."""
    obj = str(waiting["object"])
    resp = yield m.GetParameterValues(parameter_names=[obj])
    got = expect(resp, m.GetParameterValuesResponse).parameter_list
    read = {p.name[len(obj) :]: p.value for p in got if p.name.startswith(obj)}
    state = read.get("DiagnosticsState", "")
    result: dict[str, Any] = {
        "test": waiting["test"],
        "object": obj,
        "requested": waiting.get("requested", {}),
        "diagnosticsState": state,
    }
    if state not in SUCCESS_STATES:
        raise DiagnosticsFailed(failure_reason(str(waiting["test"]), state), result)
    test = str(waiting["test"])
    result[test] = RESULTS[test](read).model_dump(mode="json")
    return result


class DiagnosticsFailed(PlanFault):
    """The CPE ran the test and it failed (DiagnosticsState Error_...): the job
    faults with that reason and no CPE fault code; ``detail`` is what was read."""

    def __init__(self, reason: str, detail: dict[str, Any]) -> None:
        super().__init__(0, reason, detail)


SUCCESS_STATES = frozenset({"Complete", "Completed"})  # TR-098 transfers say "Completed"


def failure_reason(test: str, state: str) -> str:
    """What an operator reads when the test did not complete."""
    if state.startswith("Error"):
        return f"{test} diagnostics failed: {state}"
    if state == "Canceled":
        return f"{test} diagnostics canceled by the CPE"
    return f"{test} diagnostics not complete: DiagnosticsState is {state or 'missing'!r}"


# ------------------------------------------------------------------ typed results


def _int(read: dict[str, str], name: str) -> int | None:
    try:
        return int(read[name])
    except (KeyError, ValueError):
        return None


def _time(read: dict[str, str], name: str) -> datetime | None:
    text = read.get(name)
    if not text or text.startswith("0001-01-01"):  # TR-069's Unknown Time
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Out(BaseModel):
    pass


class PingResult(_Out):
    successCount: int | None
    failureCount: int | None
    averageResponseTime: int | None  # milliseconds
    minimumResponseTime: int | None
    maximumResponseTime: int | None
    # microseconds, where the model has them (TR-181 *Detailed)
    averageResponseTimeDetailed: int | None = None
    minimumResponseTimeDetailed: int | None = None
    maximumResponseTimeDetailed: int | None = None
    ipAddressUsed: str | None = None

    @classmethod
    def of(cls, read: dict[str, str]) -> PingResult:
        return cls(
            successCount=_int(read, "SuccessCount"),
            failureCount=_int(read, "FailureCount"),
            averageResponseTime=_int(read, "AverageResponseTime"),
            minimumResponseTime=_int(read, "MinimumResponseTime"),
            maximumResponseTime=_int(read, "MaximumResponseTime"),
            averageResponseTimeDetailed=_int(read, "AverageResponseTimeDetailed"),
            minimumResponseTimeDetailed=_int(read, "MinimumResponseTimeDetailed"),
            maximumResponseTimeDetailed=_int(read, "MaximumResponseTimeDetailed"),
            ipAddressUsed=read.get("IPAddressUsed"),
        )


class Hop(_Out):
    hop: int
    host: str
    address: str
    errorCode: int | None
    rtTimes: list[int]  # milliseconds, one per try


class TraceRouteResult(_Out):
    responseTime: int | None
    hops: list[Hop]

    @classmethod
    def of(cls, read: dict[str, str]) -> TraceRouteResult:
        # TR-181 names a hop's fields Host, HostAddress...; TR-098 HopHost, HopHostAddress...
        rows: dict[int, dict[str, str]] = {}
        for name, value in read.items():
            if name.startswith("RouteHops."):
                parts = name.split(".")
                if len(parts) == 3 and parts[1].isdigit():
                    rows.setdefault(int(parts[1]), {})[parts[2].removeprefix("Hop")] = value
        hops = [
            Hop(
                hop=n,
                host=row.get("Host", ""),
                address=row.get("HostAddress", ""),
                errorCode=_int(row, "ErrorCode"),
                rtTimes=[int(t) for t in row.get("RTTimes", "").split(",") if t.strip().isdigit()],
            )
            for n, row in sorted(rows.items())
        ]
        return cls(responseTime=_int(read, "ResponseTime"), hops=hops)


class ThroughputResult(_Out):
    """TR-143 throughput: test bytes over the time from the first to the last byte."""

    romTime: datetime | None  # request (or TCP open for TR-098 uploads) sent
    bomTime: datetime | None  # first byte of the test
    eomTime: datetime | None  # last byte
    tcpOpenRequestTime: datetime | None
    tcpOpenResponseTime: datetime | None
    testBytes: int | None  # bytes of the test file, received (download) or sent (upload)
    totalBytesReceived: int | None
    totalBytesSent: int | None
    seconds: float | None  # EOMTime - BOMTime
    throughputBps: float | None  # bits per second: testBytes * 8 / seconds

    @classmethod
    def of(cls, read: dict[str, str], bytes_names: tuple[str, ...]) -> ThroughputResult:
        bom, eom = _time(read, "BOMTime"), _time(read, "EOMTime")
        test_bytes = next((v for v in (_int(read, n) for n in bytes_names) if v is not None), None)
        seconds = (eom - bom).total_seconds() if bom and eom else None
        throughput = (
            test_bytes * 8 / seconds if seconds and seconds > 0 and test_bytes is not None else None
        )
        return cls(
            romTime=_time(read, "ROMTime"),
            bomTime=bom,
            eomTime=eom,
            tcpOpenRequestTime=_time(read, "TCPOpenRequestTime"),
            tcpOpenResponseTime=_time(read, "TCPOpenResponseTime"),
            testBytes=test_bytes,
            totalBytesReceived=_int(read, "TotalBytesReceived"),
            totalBytesSent=_int(read, "TotalBytesSent"),
            seconds=seconds,
            throughputBps=None if throughput is None else round(throughput, 1),
        )


class UdpEchoResult(_Out):
    successCount: int | None
    failureCount: int | None
    averageResponseTime: int | None  # milliseconds
    minimumResponseTime: int | None
    maximumResponseTime: int | None

    @classmethod
    def of(cls, read: dict[str, str]) -> UdpEchoResult:
        return cls(
            successCount=_int(read, "SuccessCount"),
            failureCount=_int(read, "FailureCount"),
            averageResponseTime=_int(read, "AverageResponseTime"),
            minimumResponseTime=_int(read, "MinimumResponseTime"),
            maximumResponseTime=_int(read, "MaximumResponseTime"),
        )


class ServerSelectionResult(_Out):
    fastestHost: str | None
    averageResponseTime: int | None  # microseconds (TR-181 ServerSelectionDiagnostics)
    minimumResponseTime: int | None
    maximumResponseTime: int | None

    @classmethod
    def of(cls, read: dict[str, str]) -> ServerSelectionResult:
        return cls(
            fastestHost=read.get("FastestHost") or None,
            averageResponseTime=_int(read, "AverageResponseTime"),
            minimumResponseTime=_int(read, "MinimumResponseTime"),
            maximumResponseTime=_int(read, "MaximumResponseTime"),
        )


RESULTS: dict[str, Any] = {
    "ping": PingResult.of,
    "traceroute": TraceRouteResult.of,
    # TR-143: download throughput counts TestBytesReceived; TR-098 uploads have only
    # TestFileLength for the bytes of the test (TR-181 adds TestBytesSent)
    "download": lambda read: ThroughputResult.of(read, ("TestBytesReceived",)),
    "upload": lambda read: ThroughputResult.of(read, ("TestBytesSent", "TestFileLength")),
    "udpEcho": UdpEchoResult.of,
    "serverSelection": ServerSelectionResult.of,
}
