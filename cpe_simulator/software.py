"""Software modules as a CPE runs them (TR-069 A.4.2.1 ChangeDUState, TR-181 SoftwareModules).

The device keeps its modules in its own tree: ``SoftwareModules.ExecEnv.{i}.``
(one environment from the template), ``DeploymentUnit.{i}.`` and
``ExecutionUnit.{i}.`` (rows the device adds and removes itself). A
ChangeDUState is accepted in the session and carried out after it, in order;
each operation's outcome, with the DU fault codes of TR-069 Table A.7
(9022-9032) or a download failure (9010-9019), goes into the
DUStateChangeComplete sent in a later session.

A deployment unit package is the simulator's own format, like its firmware
images: a header naming the DU and the execution units it brings, then a
payload whose SHA-256 the header carries::

    CPE-SIM-DU name=<n> version=<v> units=<eu1>,<eu2> sha256=<64 hex>\\n<payload>
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from acs.cwmp import messages as m
from cpe_simulator.faults import CpeFault
from cpe_simulator.transfers import Transfer, check_url, download
from cpe_simulator.tree import ParameterTree

MAGIC = b"CPE-SIM-DU"
_HEADER = re.compile(
    rb"CPE-SIM-DU name=([A-Za-z0-9_.-]{1,64}) version=([A-Za-z0-9_.-]{1,32})"
    rb" units=([A-Za-z0-9_.,-]{0,512}) sha256=([0-9a-f]{64})\n"
)
# UUIDs of DUs the CPE names itself (no UUID in the Install): version 5 of the
# DU's name in this namespace, as TR-069 A.4.2.1 suggests for CPE-made ones
_NAMESPACE = uuid.UUID("6f1c0a52-8d1e-4a55-9a53-3f0c1e0b9d21")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class BadPackage(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str
    units: tuple[str, ...]


def make_package(name: str, version: str, units: tuple[str, ...] = (), size: int = 4096) -> bytes:
    """A DU package for tests and the README: ``units`` default to one named after it."""
    payload = (os.urandom(32) * (size // 32 + 1))[:size]
    digest = hashlib.sha256(payload).hexdigest()
    header = f"{MAGIC.decode()} name={name} version={version} units={','.join(units or (name,))}"
    return f"{header} sha256={digest}\n".encode() + payload


def read_package(data: bytes) -> Package:
    match = _HEADER.match(data[:1000])
    if match is None:
        raise BadPackage("not a deployment unit package (bad header)")
    if hashlib.sha256(data[match.end() :]).hexdigest() != match.group(4).decode():
        raise BadPackage("payload does not match its SHA-256")
    units = tuple(u for u in match.group(3).decode().split(",") if u)
    return Package(match.group(1).decode(), match.group(2).decode(), units)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.-]", version))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class SoftwareModules:
    """The SoftwareModules subtree of one CPE's tree, and the DU operations on it."""

    def __init__(self, tree: ParameterTree) -> None:
        self.tree = tree
        self.base = f"{tree.root}SoftwareModules."

    @property
    def supported(self) -> bool:
        return bool(self.tree.instances(self.base + "ExecEnv."))

    # ------------------------------------------------------------ reading the tree

    def _get(self, row: str, name: str) -> str:
        return self.tree.value(row + name)

    def _rows(self, table: str) -> list[str]:
        return [f"{self.base}{table}.{n}." for n in self.tree.instances(f"{self.base}{table}.")]

    def _find(self, du_uuid: str, version: str = "", url: str = "") -> list[str]:
        return [
            row
            for row in self._rows("DeploymentUnit")
            if (self._get(row, "UUID") == du_uuid if du_uuid else self._get(row, "URL") == url)
            and (not version or self._get(row, "Version") == version)
        ]

    def _env(self, ref: str) -> str:
        """The execution environment a reference names (the first one when empty)."""
        envs = self._rows("ExecEnv")
        if not ref:
            return envs[0]
        wanted = ref if ref.endswith(".") else ref + "."
        if wanted not in envs:
            raise CpeFault(9023)
        if self._get(wanted, "Enable").lower() not in ("true", "1"):
            raise CpeFault(9024)
        return wanted

    def installed(self) -> list[dict[str, str]]:
        """name, uuid, version and status of each DU (for tests and the CLI)."""
        return [
            {k: self._get(row, k) for k in ("Name", "UUID", "Version", "Status")}
            for row in self._rows("DeploymentUnit")
        ]

    # ------------------------------------------------------------ changing it

    def _add(self, package: Package, du_uuid: str, url: str, env: str) -> tuple[str, list[str]]:
        at = _iso(_now())
        eus = []
        for unit in package.units:
            n = self.tree.add_instance_internal(
                self.base + "ExecutionUnit.",
                {
                    "EUID": f"{package.name}:{unit}",
                    "Name": unit,
                    "ExecEnvLabel": unit,
                    "Status": "Active",
                    "RequestedState": "Active",
                    "AutoStart": "true",
                    "Vendor": "cpe-sim",
                    "Version": package.version,
                    "ExecutionEnvRef": env.rstrip("."),
                },
            )
            eus.append(f"{self.base}ExecutionUnit.{n}")
        n = self.tree.add_instance_internal(
            self.base + "DeploymentUnit.",
            {
                "UUID": du_uuid,
                "DUID": f"{package.name}-{package.version}",
                "Name": package.name,
                "Status": "Installed",
                "Resolved": "true",
                "URL": url,
                "Vendor": "cpe-sim",
                "Version": package.version,
                "ExecutionUnitList": ",".join(eus),
                "ExecutionEnvRef": env.rstrip("."),
                "Installed": at,
                "LastUpdate": at,
            },
        )
        return f"{self.base}DeploymentUnit.{n}", eus

    def _remove(self, row: str) -> list[str]:
        eus = [e for e in self._get(row, "ExecutionUnitList").split(",") if e]
        for eu in eus:
            if (eu + ".") in self._rows("ExecutionUnit"):
                self.tree.delete_instance_internal(eu + ".")
        self.tree.delete_instance_internal(row)
        return eus

    def install_local(self, package: Package) -> m.AutonomousDUStateChangeComplete:
        """A module the device installs on its own (a local user, a bundled app)."""
        start = _now()
        du_uuid = str(uuid.uuid5(_NAMESPACE, package.name))
        ref, eus = self._add(package, du_uuid, "", self._env(""))
        return m.AutonomousDUStateChangeComplete(
            results=[
                m.AutonOpResultStruct(
                    uuid=du_uuid,
                    deployment_unit_ref=ref,
                    version=package.version,
                    current_state="Installed",
                    resolved=True,
                    execution_unit_ref_list=",".join(eus),
                    start_time=start,
                    complete_time=_now(),
                    operation_performed="Install",
                )
            ]
        )

    async def execute(
        self, http: aiohttp.ClientSession, request: m.ChangeDUState
    ) -> m.DUStateChangeComplete:
        """Carry out every operation in order; one failing does not stop the others
        (TR-069 A.4.2.1 leaves atomicity to the CPE; this one has none)."""
        results = []
        for op in request.operations:
            start = _now()
            try:
                result = await self._operate(http, op)
            except CpeFault as fault:
                result = self._failed(op, fault)
            result.start_time, result.complete_time = start, _now()
            results.append(result)
        return m.DUStateChangeComplete(results=results, command_key=request.command_key)

    def _failed(self, op: object, fault: CpeFault) -> m.OpResultStruct:
        du_uuid = getattr(op, "uuid", "")
        rows = self._find(du_uuid) if du_uuid and _UUID.match(du_uuid) else []
        # a failed Install leaves nothing ("Failed"); a failed Update or Uninstall
        # leaves the DU as it was
        state = "Installed" if rows and not isinstance(op, m.InstallOpStruct) else "Failed"
        return m.OpResultStruct(
            uuid=du_uuid,
            deployment_unit_ref=rows[0].rstrip(".") if state == "Installed" else "",
            version=self._get(rows[0], "Version") if state == "Installed" else "",
            current_state=state,
            resolved=state == "Installed",
            execution_unit_ref_list="",
            start_time=None,
            complete_time=None,
            fault=m.FaultStruct(fault.code, fault.string),
        )

    async def _fetch(
        self, http: aiohttp.ClientSession, url: str, username: str, password: str
    ) -> Package:
        check_url(url)
        transfer = Transfer("", True, "", url, username, password, 0, "")
        data = await download(http, transfer)
        try:
            return read_package(data)
        except BadPackage as bad:
            raise CpeFault(9018, f"File transfer failure: file corrupted ({bad})") from None

    async def _operate(self, http: aiohttp.ClientSession, op: object) -> m.OpResultStruct:
        if getattr(op, "uuid", "") and not _UUID.match(op.uuid):  # type: ignore[attr-defined]
            raise CpeFault(9022)
        if isinstance(op, m.InstallOpStruct):
            env = self._env(op.execution_env_ref)
            package = await self._fetch(http, op.url, op.username, op.password)
            du_uuid = op.uuid or str(uuid.uuid5(_NAMESPACE, package.name))
            for row in self._find(du_uuid):
                if self._get(row, "ExecutionEnvRef") + "." == env:
                    raise CpeFault(9026)
            ref, eus = self._add(package, du_uuid, op.url, env)
            return _ok(du_uuid, ref, package.version, "Installed", eus)
        if isinstance(op, m.UpdateOpStruct):
            rows = self._find(op.uuid, op.version, "" if op.uuid else op.url)
            if not rows:
                raise CpeFault(9028)
            if len(rows) > 1 and not op.version:
                raise CpeFault(9031)
            row = rows[0]
            url = op.url or self._get(row, "URL")
            package = await self._fetch(http, url, op.username, op.password)
            current = self._get(row, "Version")
            if package.version == current:
                raise CpeFault(9032)
            if _version_key(package.version) < _version_key(current):
                raise CpeFault(9030)
            self.tree.set_value_internal(row + "Version", package.version)
            self.tree.set_value_internal(row + "DUID", f"{package.name}-{package.version}")
            self.tree.set_value_internal(row + "URL", url)
            self.tree.set_value_internal(row + "LastUpdate", _iso(_now()))
            eus = [e for e in self._get(row, "ExecutionUnitList").split(",") if e]
            for eu in eus:
                self.tree.set_value_internal(eu + ".Version", package.version)
            return _ok(self._get(row, "UUID"), row.rstrip("."), package.version, "Installed", eus)
        if isinstance(op, m.UninstallOpStruct):
            env = self._env(op.execution_env_ref) if op.execution_env_ref else ""
            rows = self._find(op.uuid, op.version)
            if not rows:
                raise CpeFault(9028)
            if env:
                rows = [r for r in rows if self._get(r, "ExecutionEnvRef") + "." == env]
                if not rows:
                    raise CpeFault(9025)
            row = rows[0]
            version = self._get(row, "Version")
            eus = self._remove(row)
            result = _ok(op.uuid, row.rstrip("."), version, "Uninstalled", eus)
            result.resolved = False
            return result
        raise CpeFault(9003, "Invalid arguments: unknown operation")


def _ok(du_uuid: str, ref: str, version: str, state: str, eus: list[str]) -> m.OpResultStruct:
    return m.OpResultStruct(
        uuid=du_uuid,
        deployment_unit_ref=ref,
        version=version,
        current_state=state,
        resolved=True,
        execution_unit_ref_list=",".join(eus),
        start_time=None,
        complete_time=None,
    )
