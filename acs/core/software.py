"""Software modules (TR-069 A.4.2.1 ChangeDUState, TR-157 / TR-181 SoftwareModules).

A ``changeDUState`` job carries Install, Update and Uninstall operations; the
CPE answers ChangeDUStateResponse at once and carries them out after the
session, reporting each operation's outcome in DUStateChangeComplete with the
job's CommandKey (a later session). The job waits for it like a Download
waits for TransferComplete, and closes with the results.

The device's modules are parameters of its tree
(``SoftwareModules.DeploymentUnit.{i}.``, ``ExecutionUnit.{i}.``,
``ExecEnv.{i}.``); ``inventory`` reads them from the stored tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acs.core.plans import Plan, PlanFault, expect
from acs.core.times import rfc3339_or_none
from acs.cwmp import messages as m

# RFC 4122 textual form, as TR-069 A.4.2.1 asks of the UUID argument (fault 9022 otherwise)
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
# the method the job waits for after ChangeDUStateResponse
AWAITS = "DUStateChangeComplete"

Url = Annotated[str, Field(min_length=1, max_length=1024)]
Uuid = Annotated[str, Field(pattern=UUID_PATTERN)]
Text = Annotated[str, Field(max_length=256)]
# cwmp-1-2.xsd: ExecutionEnvRef and Version are strings of at most 256 / 32 characters
EnvRef = Annotated[str, Field(max_length=256)]
Version = Annotated[str, Field(max_length=32)]


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InstallOp(_Op):
    """Install a DU from ``url``, or from ``fileName`` (GenieACS says ``file``) of the
    ACS's file server, whose URL and credentials the ACS fills in when the job runs."""

    type: Literal["Install"]
    url: Url | None = None
    fileName: str | None = Field(default=None, min_length=1, max_length=255, alias="file")
    uuid: Uuid | Literal[""] = ""
    username: Text = ""
    password: Text = ""
    executionEnvRef: EnvRef = ""

    @model_validator(mode="after")
    def _one_source(self) -> InstallOp:
        if (self.url is None) == (self.fileName is None):
            raise ValueError("give exactly one of url or fileName")
        return self


class UpdateOp(_Op):
    """Update the DU named by ``uuid`` (or, without one, by the URL it came from)
    from ``url`` or ``fileName`` of the file server (neither: the DU's own URL)."""

    type: Literal["Update"]
    uuid: Uuid | Literal[""] = ""
    version: Version = ""
    url: Url | Literal[""] = ""
    fileName: str | None = Field(default=None, min_length=1, max_length=255, alias="file")
    username: Text = ""
    password: Text = ""

    @model_validator(mode="after")
    def _names_a_du(self) -> UpdateOp:
        if self.url and self.fileName is not None:
            raise ValueError("give at most one of url or fileName")
        if not self.uuid and not self.url:
            raise ValueError("give the uuid of the deployment unit to update (or its url)")
        return self


class UninstallOp(_Op):
    type: Literal["Uninstall"]
    uuid: Uuid
    version: Version = ""
    executionEnvRef: EnvRef = ""


Operation = Annotated[InstallOp | UpdateOp | UninstallOp, Field(discriminator="type")]


class ChangeDUStateArgs(_Op):
    operations: list[Operation] = Field(min_length=1, max_length=16)
    # cwmp-1-2.xsd CommandKeyType: at most 32 characters
    commandKey: str | None = Field(default=None, max_length=32)


def unsupported(cwmp_version: str | None) -> str | None:
    """Why a device speaking ``cwmp_version`` cannot be sent ChangeDUState, or None:
    the RPC came with CWMP 1.2 (cwmp-1-2.xsd); no earlier schema has it."""
    if cwmp_version in ("1.0", "1.1"):
        return f"ChangeDUState needs CWMP 1.2 or later; the device speaks CWMP {cwmp_version}"
    return None


def files_of(args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(file name, error path) of each Install or Update from the ACS's file server."""
    out = []
    for i, op in enumerate(args.get("operations") or []):
        if isinstance(op, dict) and op.get("type") in ("Install", "Update"):
            for key in ("fileName", "file"):
                if op.get(key):
                    out.append((str(op[key]), f"operations.{i}.{key}"))
    return out


def resolve_files(
    args: dict[str, Any], url_of: Callable[[str], str | None], username: str, password: str
) -> dict[str, Any] | str:
    """``args`` with each Install or Update by file name given its file-server URL and
    the file server's credentials; the unknown file name when one is missing."""
    ops = []
    for op in args.get("operations") or []:
        name = op.get("fileName") or op.get("file") if isinstance(op, dict) else None
        if not name:
            ops.append(op)
            continue
        url = url_of(str(name))
        if url is None:
            return str(name)
        resolved = {k: v for k, v in op.items() if k not in ("fileName", "file")}
        resolved["url"] = url
        if username and password:
            resolved["username"], resolved["password"] = username, password
        ops.append(resolved)
    return {**args, "operations": ops}


def _struct(op: InstallOp | UpdateOp | UninstallOp) -> Any:
    if isinstance(op, InstallOp):
        return m.InstallOpStruct(
            url=op.url or "",
            uuid=op.uuid,
            username=op.username,
            password=op.password,
            execution_env_ref=op.executionEnvRef,
        )
    if isinstance(op, UpdateOp):
        return m.UpdateOpStruct(
            uuid=op.uuid, version=op.version, url=op.url, username=op.username, password=op.password
        )
    return m.UninstallOpStruct(
        uuid=op.uuid, version=op.version, execution_env_ref=op.executionEnvRef
    )


def plan(a: ChangeDUStateArgs, ck: str) -> Plan:
    if any(getattr(op, "fileName", None) is not None for op in a.operations):
        # the session driver resolves file names first; reaching here means it did not
        raise PlanFault(8002, "an operation by fileName reached the plan unresolved")
    resp = yield m.ChangeDUState(operations=[_struct(op) for op in a.operations], command_key=ck)
    expect(resp, m.ChangeDUStateResponse)
    # status 1 + commandKey: the job stays open until DUStateChangeComplete
    return {
        "commandKey": ck,
        "status": 1,
        "awaits": AWAITS,
        "operations": [op.type for op in a.operations],
    }


# ------------------------------------------------------------------ results


def _fault(f: m.FaultStruct) -> dict[str, Any] | None:
    return {"code": f.fault_code, "string": f.fault_string} if f.fault_code else None


def _refs(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def op_result(r: m.OpResultStruct | m.AutonOpResultStruct) -> dict[str, Any]:
    """One operation's outcome as the job and the device events keep it."""
    out: dict[str, Any] = {
        "uuid": r.uuid,
        "deploymentUnitRef": r.deployment_unit_ref,
        "version": r.version,
        "currentState": r.current_state,
        "resolved": r.resolved,
        "executionUnitRefList": _refs(r.execution_unit_ref_list),
        "startTime": rfc3339_or_none(r.start_time),
        "completeTime": rfc3339_or_none(r.complete_time),
        "fault": _fault(r.fault),
    }
    if isinstance(r, m.AutonOpResultStruct):
        out["operationPerformed"] = r.operation_performed
    return out


def outcome(results: list[dict[str, Any]]) -> tuple[int, str] | None:
    """None when every operation succeeded, else the fault the job ends with: the
    first operation's code and a string naming each failed one."""
    failed = [(i, r) for i, r in enumerate(results) if r["fault"]]
    if not failed and results:
        return None
    if not results:
        return 9002, "DUStateChangeComplete carried no results"
    parts = [
        f"operation {i + 1} ({r['uuid'] or 'no UUID'}): {r['fault']['code']} {r['fault']['string']}"
        for i, r in failed
    ]
    return failed[0][1]["fault"]["code"], f"{len(failed)} of {len(results)} failed: " + "; ".join(
        parts
    )


# ------------------------------------------------------------------ inventory

_ROW = re.compile(r"^(.*SoftwareModules\.)(DeploymentUnit|ExecutionUnit|ExecEnv)\.(\d+)\.([^.]+)$")


def _rows(values: Iterable[tuple[str, str | None]]) -> dict[str, dict[int, dict[str, str]]]:
    tables: dict[str, dict[int, dict[str, str]]] = {
        "DeploymentUnit": {},
        "ExecutionUnit": {},
        "ExecEnv": {},
    }
    for path, value in values:
        match = _ROW.match(path)
        if match is not None:
            row = tables[match.group(2)].setdefault(int(match.group(3)), {})
            row[match.group(4)] = value or ""
    return tables


def inventory(root: str, values: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """The device's modules from its stored tree: each DeploymentUnit with its
    ExecutionUnits (by the DU's ExecutionUnitList), and the execution environments."""
    tables = _rows(values)
    prefix = f"{root}SoftwareModules."
    units = {f"{prefix}ExecutionUnit.{n}.": (n, row) for n, row in tables["ExecutionUnit"].items()}

    def unit(ref: str) -> dict[str, Any]:
        n, row = units.get(ref if ref.endswith(".") else ref + ".", (None, {}))
        return {
            "ref": ref,
            "instance": n,
            "name": row.get("Name", ""),
            "euid": row.get("EUID", ""),
            "status": row.get("Status", ""),
            "requestedState": row.get("RequestedState", ""),
            "executionFaultCode": row.get("ExecutionFaultCode", ""),
            "version": row.get("Version", ""),
        }

    modules = [
        {
            "instance": n,
            "ref": f"{prefix}DeploymentUnit.{n}.",
            "name": row.get("Name", ""),
            "uuid": row.get("UUID", ""),
            "duid": row.get("DUID", ""),
            "version": row.get("Version", ""),
            "vendor": row.get("Vendor", ""),
            "status": row.get("Status", ""),
            "resolved": row.get("Resolved", "").lower() in ("true", "1"),
            "url": row.get("URL", ""),
            "executionEnvRef": row.get("ExecutionEnvRef", ""),
            "executionUnits": [unit(r) for r in _refs(row.get("ExecutionUnitList", ""))],
        }
        for n, row in sorted(tables["DeploymentUnit"].items())
    ]
    envs = [
        {
            "instance": n,
            "ref": f"{prefix}ExecEnv.{n}.",
            "name": row.get("Name", ""),
            "type": row.get("Type", ""),
            "status": row.get("Status", ""),
            "enable": row.get("Enable", "").lower() in ("true", "1"),
            "version": row.get("Version", ""),
        }
        for n, row in sorted(tables["ExecEnv"].items())
    ]
    return {"modules": modules, "executionEnvironments": envs}
