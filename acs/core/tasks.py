"""Jobs (tasks) queued per CPE, and the RPC plan each one runs.

Task names and argument shapes are GenieACS NBI's, so operators' scripts carry
over: getParameterValues {parameterNames}, setParameterValues
{parameterValues: [[path, value, type?]]}, refreshObject {objectName},
addObject {objectName, parameterValues?}, deleteObject {objectName}, reboot,
factoryReset, download {...}; and beyond them upload, scheduleInform,
getParameterAttributes, setParameterAttributes, getParameterNames,
getRPCMethods. Arguments are validated by pydantic models, so a bad job is
refused with the path of the bad field before it is queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from acs.core import diagnostics, software, transfers, values
from acs.core.plans import Plan, PlanFault, discover, expect, read_values
from acs.core.times import rfc3339_or_none
from acs.cwmp import messages as m

# xsd types a setParameterValues may name; anything else is refused up front
XSD_TYPES = {
    "xsd:string",
    "xsd:int",
    "xsd:unsignedInt",
    "xsd:long",
    "xsd:unsignedLong",
    "xsd:boolean",
    "xsd:dateTime",
    "xsd:base64",
    "xsd:hexBinary",
    "xsd:decimal",
}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ParameterPath = Annotated[str, Field(min_length=1, max_length=1024)]
ObjectPath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"\.$")]


class GetParameterValuesArgs(_Args):
    parameterNames: list[ParameterPath] = Field(min_length=1)


class GetParameterNamesArgs(_Args):
    parameterPath: str = ""
    nextLevel: bool = False


ValueTriple = tuple[ParameterPath, Any] | tuple[ParameterPath, Any, str]


class SetParameterValuesArgs(_Args):
    parameterValues: list[ValueTriple] = Field(min_length=1)
    parameterKey: str = ""


class RefreshObjectArgs(_Args):
    objectName: str = ""


class AddObjectArgs(_Args):
    objectName: ObjectPath
    parameterValues: list[ValueTriple] = Field(default_factory=list)
    parameterKey: str = ""


class DeleteObjectArgs(_Args):
    objectName: ObjectPath
    parameterKey: str = ""


class CommandKeyArgs(_Args):
    commandKey: str | None = None


class DownloadArgs(_Args):
    """Either a ``url``, or a ``fileName`` (GenieACS also says ``file``) of our file server,
    or a ``backupId`` (a config backup to restore), whose URL, size and credentials
    the ACS fills in when the job runs."""

    fileType: str = "1 Firmware Upgrade Image"
    url: str | None = Field(default=None, min_length=1)
    fileName: str | None = Field(default=None, min_length=1, alias="file")
    backupId: int | None = Field(default=None, ge=1, le=2**63 - 1)
    username: str = ""
    password: str = ""
    fileSize: int = Field(default=0, ge=0)
    targetFileName: str = ""
    delaySeconds: int = Field(default=0, ge=0)
    commandKey: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DownloadArgs:
        if [self.url, self.fileName, self.backupId].count(None) != 2:
            raise ValueError("give exactly one of url, fileName or backupId")
        return self


class UploadArgs(_Args):
    """Without a ``url`` the CPE uploads to the ACS's own file server, at a URL and
    with a credential made for this job when it runs (a config backup)."""

    fileType: str = "1 Vendor Configuration File"
    url: str | None = Field(default=None, min_length=1)
    username: str = ""
    password: str = ""
    delaySeconds: int = Field(default=0, ge=0)
    commandKey: str | None = None


class ScheduleInformArgs(_Args):
    delaySeconds: int = Field(ge=1)
    commandKey: str = ""


class AttributeChange(_Args):
    name: ParameterPath
    notification: Literal[0, 1, 2, 3, 4, 5, 6] | None = None
    accessList: list[str] | None = None


class SetParameterAttributesArgs(_Args):
    parameterAttributes: list[AttributeChange] = Field(min_length=1)


class NoArgs(_Args):
    pass


class DiagnosticsArgs(_Args, diagnostics.DiagnosticsArgs):
    """A TR-143 test (acs.core.diagnostics): ``test`` and that test's arguments."""


TASK_ARGS: dict[str, type[_Args]] = {
    "getParameterValues": GetParameterValuesArgs,
    "getParameterNames": GetParameterNamesArgs,
    "setParameterValues": SetParameterValuesArgs,
    "refreshObject": RefreshObjectArgs,
    "addObject": AddObjectArgs,
    "deleteObject": DeleteObjectArgs,
    "reboot": CommandKeyArgs,
    "factoryReset": NoArgs,
    "download": DownloadArgs,
    "upload": UploadArgs,
    "scheduleInform": ScheduleInformArgs,
    "getParameterAttributes": GetParameterValuesArgs,
    "setParameterAttributes": SetParameterAttributesArgs,
    "getRPCMethods": NoArgs,
    "changeDUState": software.ChangeDUStateArgs,
    "diagnostics": DiagnosticsArgs,
    **transfers.TASK_ARGS,
}


class InvalidTask(ValueError):
    """``code``: the fault the job gets when it is refused at run time."""

    def __init__(
        self, reason: str, errors: list[dict[str, Any]] | None = None, code: int = 8003
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []
        self.code = code


TypeOf = Callable[[str], str | None]
#: tasks whose values are checked against the device's own types (its tree)
NEEDS_TYPES = frozenset({"setParameterValues", "addObject"})


def validate_task(name: str, args: dict[str, Any], type_of: TypeOf | None = None) -> _Args:
    """The parsed arguments; InvalidTask names each bad field. Values are checked
    against their parameter's type (acs.core.values): the declared one, the
    data model's, and with ``type_of`` (the device's tree) the device's own."""
    model = TASK_ARGS.get(name)
    if model is None:
        raise InvalidTask(f"unknown task {name!r}; known: {', '.join(sorted(TASK_ARGS))}")
    try:
        parsed = model.model_validate(args)
    except ValidationError as exc:
        errors = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        raise InvalidTask(f"invalid arguments for {name}", errors) from None
    for triple in getattr(parsed, "parameterValues", []):
        if len(triple) == 3 and triple[2] not in XSD_TYPES:
            raise InvalidTask(
                f"invalid arguments for {name}",
                [{"path": "parameterValues", "message": f"unknown xsd type {triple[2]!r}"}],
            )
    unsendable = _unsendable(args)
    if unsendable is not None:
        raise InvalidTask(f"invalid arguments for {name}", [unsendable])
    _check_values(name, parsed, type_of or (lambda _path: None))
    return parsed


def _unsendable(data: Any, path: str = "") -> dict[str, Any] | None:
    """The first string of the arguments no CWMP message can carry: refused here,
    not when the session's request fails to serialize."""
    if isinstance(data, str):
        problem = values.xml_problem(data)
        return None if problem is None else {"path": path, "message": problem}
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list | tuple)
        else ()
    )
    for key, item in items:
        found = _unsendable(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _check_values(name: str, parsed: _Args, type_of: TypeOf) -> None:
    """Every value of a setParameterValues or addObject fits its parameter."""
    if not isinstance(parsed, SetParameterValuesArgs | AddObjectArgs):
        return
    # an added instance's parameters: the model's rule is the table's, per {i}
    prefix = parsed.objectName + "{i}." if isinstance(parsed, AddObjectArgs) else ""
    errors: list[dict[str, Any]] = []
    codes: set[int] = set()
    for i, triple in enumerate(parsed.parameterValues):
        path, value = prefix + triple[0], triple[1]
        if not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            errors.append(
                {"path": f"parameterValues.{i}.1", "message": "must be a string, number or boolean"}
            )
            continue
        declared = triple[2] if len(triple) == 3 else None
        try:
            values.check(path, _wire_value(value), declared, type_of(path))
        except values.InvalidValue as bad:
            errors.append({"path": f"parameterValues.{i}.1", "message": str(bad)})
            codes.add(bad.code)
    if errors:
        code = 8003 if not codes else min(codes)
        raise InvalidTask(f"invalid parameter values for {name}", errors, code)


def file_of(name: str, args: dict[str, Any]) -> str | None:
    """The file-server file a job names (a download by ``fileName``/``file``), or None."""
    if name not in ("download", "scheduleDownload"):
        return None
    named = args.get("fileName") or args.get("file")
    return str(named) if named else None


#: tasks a FOTA-only terminal can carry out. None: every task of the queue is
#: an RPC inside a CWMP session, which such a terminal never opens; firmware
#: reaches it through a campaign, answered at its FOTA check.
FOTA_TASKS: frozenset[str] = frozenset()


def never_runs(name: str, device_id: str, *, cwmp_seen: bool) -> str | None:
    """Why a ``name`` job for this device would wait forever, or None if it can run.

    ``cwmp_seen``: the device has opened a CWMP session at least once (a
    device row without one was made by FOTA check-ins). Refusing at queue time
    says so while the operator is looking, instead of a job pending for good.
    """
    if cwmp_seen or name in FOTA_TASKS:
        return None
    return (
        f"device {device_id!r} has never opened a CWMP session (a FOTA-only terminal): "
        f"a {name} job would never run; firmware reaches it through a campaign"
    )


def _wire_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_structs(
    triples: list[Any], prefix: str, type_of: TypeOf
) -> list[m.ParameterValueStruct]:
    """[[path, value, type?]] as ParameterValueStructs, each value checked against
    its parameter (PlanFault 9006/9007 otherwise); a missing type comes from the
    tree, else from the data model."""
    out = []
    for triple in triples:
        path = prefix + triple[0]
        declared = triple[2] if len(triple) == 3 else None
        reported = type_of(path)
        value = _wire_value(triple[1])
        try:
            values.check(path, value, declared, reported)
        except values.InvalidValue as bad:
            raise PlanFault(bad.code, str(bad)) from None
        if declared is None and reported is None and isinstance(triple[1], bool):
            declared = "xsd:boolean"
        out.append(m.ParameterValueStruct(path, value, values.wire_type(path, declared, reported)))
    return out


def plan_for(
    task_id: int,
    name: str,
    args: dict[str, Any],
    *,
    type_of: Callable[[str], str | None],
    batch_size: int,
    root: str,
    sent_before: bool = False,
) -> Plan:
    """The RPC plan of one task. ``type_of`` gives a stored parameter's xsd type;
    ``sent_before``: an earlier attempt went out in a session that did not finish."""
    parsed = validate_task(name, args, type_of)
    command_key = getattr(parsed, "commandKey", None) or f"task-{task_id}"
    plan = _PLANS[name](parsed, command_key, type_of, batch_size, root)
    if sent_before and name in transfers.TRANSFER_TASKS:
        # an adopted ScheduleDownload keeps its windows' end for the timeout
        ends = transfers.last_window_end(args)
        return _unless_queued(command_key, plan, {"windowEndS": ends} if ends else {})
    return plan


def _unless_queued(ck: str, send: Plan, extra: dict[str, Any] | None = None) -> Plan:
    """A transfer sent in a session that died (the ACS or its database went down,
    the connection broke) may have been accepted by the CPE without the ACS ever
    hearing it. Sent again, the CPE would carry it out twice: two downloads, two
    flashes of one image. So ask for the CPE's transfer queue first and adopt a
    transfer with this CommandKey; its TransferComplete then closes the job."""
    resp = yield m.GetAllQueuedTransfers()
    if isinstance(resp, m.GetAllQueuedTransfersResponse):
        if any(t.command_key == ck for t in resp.transfer_list):
            return _transfer_result(ck, 1, None, None) | {"adopted": True} | (extra or {})
    # a fault: the RPC is optional (TR-069 A.4.1.6), so without it we can only send again
    return (yield from send)


def _get_values(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.GetParameterValues(parameter_names=list(a.parameterNames))
    got = expect(resp, m.GetParameterValuesResponse)
    return {"values": [[p.name, p.value, p.xsd_type] for p in got.parameter_list]}


def _get_names(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.GetParameterNames(parameter_path=a.parameterPath, next_level=a.nextLevel)
    got = expect(resp, m.GetParameterNamesResponse)
    return {"names": [[i.name, i.writable] for i in got.parameter_list]}


def _set_values(a: Any, _ck: str, type_of: Any, _b: int, _r: str) -> Plan:
    structs = _value_structs(a.parameterValues, "", type_of)
    resp = yield m.SetParameterValues(parameter_list=structs, parameter_key=a.parameterKey)
    return {"status": expect(resp, m.SetParameterValuesResponse).status}


def _refresh(a: Any, _ck: str, _t: Any, batch: int, root: str) -> Plan:
    return (yield from discover(a.objectName or root, batch))


def _add_object(a: Any, _ck: str, type_of: Any, batch: int, _r: str) -> Plan:
    resp = yield m.AddObject(object_name=a.objectName, parameter_key=a.parameterKey)
    added = expect(resp, m.AddObjectResponse)
    instance = f"{a.objectName}{added.instance_number}."
    result: dict[str, Any] = {"instanceNumber": added.instance_number, "status": added.status}
    # learn the new instance first, so values set below get their real types
    learned: dict[str, str] = {}
    refreshed = yield from discover(instance, batch, learned)
    if a.parameterValues:
        try:
            structs = _value_structs(
                a.parameterValues, instance, lambda p: learned.get(p) or type_of(p)
            )
        except PlanFault as bad:  # the new instance's own types refuse a value
            raise PlanFault(
                bad.code, bad.string, {"instanceNumber": added.instance_number}
            ) from None
        resp = yield m.SetParameterValues(parameter_list=structs, parameter_key=a.parameterKey)
        result["setStatus"] = expect(resp, m.SetParameterValuesResponse).status
    result["parameters"] = refreshed["parameters"]
    return result


def _delete_object(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.DeleteObject(object_name=a.objectName, parameter_key=a.parameterKey)
    return {"status": expect(resp, m.DeleteObjectResponse).status}


def _reboot(_a: Any, ck: str, _t: Any, _b: int, _r: str) -> Plan:
    expect((yield m.Reboot(command_key=ck)), m.RebootResponse)
    return {"commandKey": ck}


def _factory_reset(_a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    expect((yield m.FactoryReset()), m.FactoryResetResponse)
    return {}


def _download(a: Any, ck: str, _t: Any, _b: int, _r: str) -> Plan:
    if a.url is None:  # a fileName or backupId the session driver did not resolve
        raise PlanFault(8003, "download without a url: its file was not resolved")
    resp = yield m.Download(
        command_key=ck,
        file_type=a.fileType,
        url=a.url,
        username=a.username,
        password=a.password,
        file_size=a.fileSize,
        target_file_name=a.targetFileName,
        delay_seconds=a.delaySeconds,
    )
    got = expect(resp, m.DownloadResponse)
    return _transfer_result(ck, got.status, got.start_time, got.complete_time)


def _upload(a: Any, ck: str, _t: Any, _b: int, _r: str) -> Plan:
    if a.url is None:  # the session driver fills it in; never sent without one
        raise PlanFault(8003, "upload without a url: the ACS made it no transfer grant")
    resp = yield m.Upload(
        command_key=ck,
        file_type=a.fileType,
        url=a.url,
        username=a.username,
        password=a.password,
        delay_seconds=a.delaySeconds,
    )
    got = expect(resp, m.UploadResponse)
    return _transfer_result(ck, got.status, got.start_time, got.complete_time)


def _transfer_result(ck: str, status: int, start: Any, complete: Any) -> dict[str, Any]:
    # status 1: the transfer goes on after the session; TransferComplete with
    # this CommandKey closes it later
    return {
        "commandKey": ck,
        "status": status,
        "startTime": rfc3339_or_none(start),
        "completeTime": rfc3339_or_none(complete),
    }


def _schedule_inform(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.ScheduleInform(delay_seconds=a.delaySeconds, command_key=a.commandKey)
    expect(resp, m.ScheduleInformResponse)
    return {}


def _get_attributes(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.GetParameterAttributes(parameter_names=list(a.parameterNames))
    got = expect(resp, m.GetParameterAttributesResponse)
    return {
        "attributes": [
            {"name": p.name, "notification": p.notification, "accessList": p.access_list}
            for p in got.parameter_list
        ]
    }


def _set_attributes(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    structs = [
        m.SetParameterAttributesStruct(
            name=c.name,
            notification_change=c.notification is not None,
            notification=c.notification or 0,
            access_list_change=c.accessList is not None,
            access_list=list(c.accessList or []),
        )
        for c in a.parameterAttributes
    ]
    expect(
        (yield m.SetParameterAttributes(parameter_list=structs)), m.SetParameterAttributesResponse
    )
    return {}


def _get_rpc_methods(_a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    resp = yield m.GetRPCMethods()
    return {"methods": list(expect(resp, m.GetRPCMethodsResponse).method_list)}


def _diagnostics(a: Any, _ck: str, _t: Any, _b: int, root: str) -> Plan:
    # built now, not at the first RPC: a test this data model lacks, or a value out
    # of its range, faults the job before anything is sent
    try:
        return diagnostics.request_plan(a, root)
    except ValueError as bad:
        raise InvalidTask(f"invalid arguments for diagnostics: {bad}") from None


_PLANS: dict[str, Callable[[Any, str, Any, int, str], Plan]] = {
    "getParameterValues": _get_values,
    "getParameterNames": _get_names,
    "setParameterValues": _set_values,
    "refreshObject": _refresh,
    "addObject": _add_object,
    "deleteObject": _delete_object,
    "reboot": _reboot,
    "factoryReset": _factory_reset,
    "download": _download,
    "upload": _upload,
    "scheduleInform": _schedule_inform,
    "getParameterAttributes": _get_attributes,
    "setParameterAttributes": _set_attributes,
    "getRPCMethods": _get_rpc_methods,
    "changeDUState": lambda a, ck, _t, _b, _r: software.plan(a, ck),
    "diagnostics": _diagnostics,
    **transfers.PLANS,
}

# Faults worth another attempt in a later session (TR-069: 9002 internal
# error, 9004 resources exceeded; 8005-style retries)
TRANSIENT_CPE_FAULTS = frozenset({9002, 9004})

__all__ = [
    "FOTA_TASKS",
    "InvalidTask",
    "PlanFault",
    "TASK_ARGS",
    "file_of",
    "never_runs",
    "plan_for",
    "read_values",
    "validate_task",
]
