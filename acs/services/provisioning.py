"""Provisioning policies at work: which apply to a session, the plan that
applies them, what is recorded afterwards, and the dry run.

Policies are read from PostgreSQL into a PolicyBook shared by all sessions of
the process and reloaded when the table changes (checked at most every
``ttl_s``), so a periodic session with no policy to apply costs no query
beyond that check; an edited policy reaches each device at its next session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.config import Settings
from acs.core import policies as engine
from acs.core.filters import Expr, FilterError, parse_filter
from acs.core.plans import Plan
from acs.core.policy_secrets import open_spec
from acs.core.policy_spec import SpecError, compile_spec
from acs.core.sealing import MaskGiven, Sealer
from acs.core.secrets import MASK, is_secret_name, mask_document, mask_value
from acs.core.templates import ROOTS, parse_template
from acs.core.windows import Window, WindowError, is_open
from acs.logs import log
from acs.services import backups
from acs.services.catalog import window_from_json
from acs.store import device_query, devices, files
from acs.store import policies as store
from acs.store import tasks as task_store
from acs.store.device_query import compile_filter

logger = logging.getLogger("acs.provisioning")


#: what operator data can raise on its way to a session's plan, beyond what the
#: compiler and the per-policy guards catch: never a reason to fail the session
OPERATOR_DATA_ERRORS = (ValueError, KeyError, TypeError, asyncpg.DataError)


def utcnow() -> datetime:
    return datetime.now(UTC)


CONFIG_FILE_TYPE = "3 Vendor Configuration File"


def policy_from_spec(
    policy_id: int, name: str, priority: int, spec: dict[str, Any]
) -> engine.Policy:
    """The engine's Policy from the stored (API-shaped) spec; SpecError lists every
    field the compiler refuses (acs.core.policy_spec, the API's own check)."""
    return compile_spec(policy_id, name, priority, spec)


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    row: store.PolicyRow
    policy: engine.Policy
    windows: tuple[Window, ...]
    events: frozenset[str]
    precondition: Expr | None = None
    # why the compiler refuses the stored policy: it applies nothing, and each
    # device it matches records this as the policy's fault
    unusable: str | None = None

    @property
    def tags_add(self) -> list[str]:
        return list((self.row.spec.get("tags") or {}).get("add", []))

    @property
    def tags_remove(self) -> list[str]:
        return list((self.row.spec.get("tags") or {}).get("remove", []))

    @property
    def download(self) -> dict[str, Any] | None:
        return self.row.spec.get("download")

    @property
    def backup(self) -> dict[str, Any] | None:
        return self.row.spec.get("backup")

    def applies(self, events: Sequence[str], now: datetime) -> bool:
        if self.events and not self.events.intersection(events):
            return False
        return is_open(self.windows, now)


def load(row: store.PolicyRow, sealer: Sealer | None = None) -> LoadedPolicy:
    """A stored policy ready for sessions; SpecError (with the fields' paths) for
    one the compiler refuses, e.g. written to the table by hand, or one whose
    sealed secrets do not open with this installation's key."""
    errors: list[dict[str, str]] = []
    try:
        policy = policy_from_spec(row.id, row.name, row.priority, open_spec(row.spec, sealer))
    except SpecError as err:
        errors.extend(err.errors)
    except ValueError as err:  # a sealed value that does not open
        errors.append({"path": "spec", "message": str(err)})
    try:
        precondition = parse_filter(row.precondition)
        compile_filter(precondition)  # its SQL is built per session: fail here, not there
    except (FilterError, ValueError, TypeError) as err:
        errors.append({"path": "precondition", "message": str(err)})
    windows = []
    for i, w in enumerate(row.windows if isinstance(row.windows, list) else [None]):
        try:
            windows.append(window_from_json(w, validate=True))
        except (WindowError, ValueError, KeyError, TypeError) as err:
            errors.append({"path": f"windows.{i}", "message": f"unusable window: {err}"})
    if errors:
        raise SpecError(errors)
    return LoadedPolicy(
        row=row,
        policy=policy,
        windows=tuple(windows),
        events=frozenset(row.events),
        precondition=precondition,
    )


def _unusable(row: store.PolicyRow, err: SpecError) -> LoadedPolicy | None:
    """A refused policy kept only to tell the devices it matches why it does
    nothing; None when even its precondition is unusable (it matches no one)."""
    try:
        precondition = parse_filter(row.precondition)
        compile_filter(precondition)
    except (FilterError, ValueError, TypeError):
        return None
    return LoadedPolicy(
        row=row,
        policy=engine.Policy(row.id, row.name, row.priority),
        windows=(),
        events=frozenset(row.events),
        precondition=precondition,
        unusable=str(err),
    )


@dataclass(slots=True)
class PolicyBook:
    """Enabled policies, parsed once per change of the table."""

    ttl_s: float = 2.0
    _policies: list[LoadedPolicy] = field(default_factory=list)
    _fingerprint: Any = None
    _checked: float = 0.0
    _key: bytes | None = None
    any_overrides: bool = True
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sealer: Sealer | None = None  # opens the literal secrets policies keep sealed

    async def current(self, conn: asyncpg.Connection) -> list[LoadedPolicy]:
        if time.monotonic() - self._checked < self.ttl_s:
            return self._policies
        # one reload at a time, and nobody served the stale list while it runs:
        # the sessions of a fleet booting together all ask at once
        async with self._lock:
            if time.monotonic() - self._checked < self.ttl_s:
                return self._policies
            row = await conn.fetchrow(
                "SELECT (SELECT count(*)::int FROM policies) AS n,"
                " (SELECT max(updated_at) FROM policies) AS at,"
                " EXISTS (SELECT 1 FROM device_overrides) AS overrides"
            )
            assert row is not None
            fingerprint = (row["n"], row["at"])
            if fingerprint != self._fingerprint:
                loaded = []
                for p in await store.list_all(conn, enabled_only=True):
                    try:
                        loaded.append(load(p, self.sealer))
                    except SpecError as err:  # stored before a rule got stricter, or by hand
                        log(logger, logging.ERROR, "policy_unusable", policy=p.name, error=err)
                        stub = _unusable(p, err)
                        if stub is not None:
                            loaded.append(stub)
                self._policies, self._fingerprint = loaded, fingerprint
            self.any_overrides = row["overrides"]
            self._checked = time.monotonic()
        return self._policies

    async def key(self, conn: asyncpg.Connection) -> bytes:
        if self._key is None:
            self._key = await store.instance_key(conn)
        return self._key

    def invalidate(self) -> None:
        self._checked = 0.0

    def surely_nothing_for(self, events: Sequence[str], now: datetime) -> bool:
        """True when the cached book, still fresh, has no policy for these events
        and no device has overrides: the session skips the database altogether.
        False means "look": the book is stale, or something may apply."""
        if time.monotonic() - self._checked >= self.ttl_s or self.any_overrides:
            return False
        return not any(p.applies(events, now) for p in self._policies)


async def matching(
    conn: asyncpg.Connection,
    device_id: str,
    candidates: Sequence[LoadedPolicy],
    failed: list[tuple[LoadedPolicy, str]] | None = None,
) -> list[LoadedPolicy]:
    """The candidates whose precondition holds for the device, in one query.

    A precondition the database refuses for this device (a value it cannot
    compare) must not take the others down with it: then each is asked on its
    own, and the refused ones go to ``failed`` with the reason."""
    if not candidates:
        return []
    try:
        async with _savepoint(conn):
            return await _hits(conn, device_id, candidates)
    except asyncpg.DataError:
        pass
    hits = []
    for p in candidates:
        try:
            async with _savepoint(conn):
                hits.extend(await _hits(conn, device_id, [p]))
        except asyncpg.DataError as err:
            log(
                logger,
                logging.WARNING,
                "precondition_failed",
                device=device_id,
                policy=p.row.name,
                error=err,
            )
            if failed is not None:
                failed.append((p, f"the precondition could not be evaluated: {err}"))
    return hits


def _savepoint(conn: asyncpg.Connection) -> Any:
    """A savepoint inside a transaction (a failed query would abort it), else nothing."""
    return conn.transaction() if conn.is_in_transaction() else contextlib.nullcontext()


async def _hits(
    conn: asyncpg.Connection, device_id: str, candidates: Sequence[LoadedPolicy]
) -> list[LoadedPolicy]:
    terms: list[str] = []
    params: list[object] = []
    for p in candidates:
        where, more = compile_filter(p.precondition, len(params) + 2)
        terms.append(f"({where})")
        params.extend(more)
    row = await conn.fetchrow(
        f"SELECT ARRAY[{', '.join(terms)}] AS hits FROM devices d"
        " LEFT JOIN device_parameters dp ON dp.device_id = d.id WHERE d.id = $1",
        device_id,
        *params,
    )
    if row is None:
        return []
    return [p for p, hit in zip(candidates, row["hits"], strict=True) if hit]


def device_fields(dev: devices.DeviceRecord) -> dict[str, str | None]:
    return {
        "DeviceID.ID": dev.id,
        "DeviceID.OUI": dev.oui,
        "DeviceID.ProductClass": dev.product_class,
        "DeviceID.SerialNumber": dev.serial_number,
        "DeviceID.Manufacturer": dev.manufacturer,
        "SoftwareVersion": dev.software_version,
        "HardwareVersion": dev.hardware_version,
        "ProvisioningCode": dev.provisioning_code,
    }


def override_policy(values: Sequence[tuple[str, str, str | None]]) -> engine.Policy:
    return engine.Policy(
        0,
        "device override",
        engine.OVERRIDE_PRIORITY,
        tuple(
            engine.ParameterRule(p, parse_template(v.replace("{", "{{").replace("}", "}}")), t)
            for p, v, t in values
        ),
    )


@dataclass(slots=True)
class SessionRun:
    """The policies one session applies, kept for recording the outcome."""

    device_id: str
    applied: list[LoadedPolicy]


async def prepare(
    conn: asyncpg.Connection,
    book: PolicyBook,
    device_id: str,
    root: str | None,
    events: Sequence[str],
    now: datetime,
    *,
    only: Sequence[LoadedPolicy] | None = None,
    failed: list[tuple[LoadedPolicy, str]] | None = None,
    sealer: Sealer | None = None,
) -> tuple[engine.State, engine.Context, list[LoadedPolicy], list[engine.Policy]] | None:
    """The state, template context and policies for one device, or None when
    nothing applies. ``only`` replaces the book and skips preconditions and
    overrides (the dry run of one policy); ``failed`` collects the policies
    whose precondition could not be evaluated. With ``sealer`` the engine sees
    the clear values of sealed secrets, so a policy that set one converges."""
    if only is None:
        candidates = [p for p in await book.current(conn) if p.applies(events, now)]
        applied = await matching(conn, device_id, candidates, failed)
        for p in applied:
            if p.unusable is not None and failed is not None:
                failed.append((p, f"the stored policy cannot be used: {p.unusable}"))
        applied = [p for p in applied if p.unusable is None]
        extra = await store.overrides(conn, device_id) if book.any_overrides else []
        extra = [(p, _opened_override(sealer, device_id, p, v), t) for p, v, t in extra]
    else:
        applied, extra = list(only), []
    if not applied and not extra:
        return None
    dev = await devices.get_device(conn, device_id)
    if dev is None:
        return None
    tree = await devices.get_parameters(conn, device_id)
    if root is None:
        root = next((r for r in ROOTS if any(k.startswith(r) for k in tree)), "Device.")
    state = engine.State.from_tree(tree)
    if sealer is not None:
        for path, rec in tree.items():
            if rec.sealed and rec.value == MASK:
                clear = sealer.open_value(device_id, path, rec.sealed)
                if clear is not None:
                    state.values[path] = clear
    ctx = engine.context_for(state, device_id, root, device_fields(dev), await book.key(conn))
    rules = [p.policy for p in applied] + ([override_policy(extra)] if extra else [])
    return state, ctx, applied, rules


OVERRIDE = "override"  # where an override's secret is sealed: apart from the tree's


def _opened_override(sealer: Sealer | None, device_id: str, path: str, value: str) -> str:
    if sealer is None or not value.startswith("acs:sealed:"):
        return value
    clear = sealer.open_value(device_id, OVERRIDE + ":" + path, value)
    return value if clear is None else clear


async def set_overrides(
    conn: asyncpg.Connection,
    sealer: Sealer,
    device_id: str,
    values: Sequence[tuple[str, str, str | None]],
) -> None:
    """Replace the device's overrides; a secret's value is kept sealed.
    MaskGiven when a secret's value is the mask (nothing is written then)."""
    masked = [
        f"parameters.{i}" for i, (p, v, _) in enumerate(values) if v == MASK and is_secret_name(p)
    ]
    if masked:
        raise MaskGiven(masked)
    await store.set_overrides(
        conn,
        device_id,
        [
            (p, sealer.seal(v, device_id, OVERRIDE + ":" + p) if v and is_secret_name(p) else v, t)
            for p, v, t in values
        ],
    )


async def session_plan(
    conn: asyncpg.Connection,
    book: PolicyBook,
    device_id: str,
    root: str,
    events: Sequence[str],
    now: datetime,
    batch_size: int,
    sealer: Sealer | None = None,
) -> tuple[Plan, SessionRun] | None:
    failed: list[tuple[LoadedPolicy, str]] = []
    prepared = await prepare(conn, book, device_id, root, events, now, failed=failed, sealer=sealer)
    for p, reason in failed:  # the device's result says why the policy did nothing
        fault = {
            "policy": p.policy.id,
            "name": p.row.name,
            "path": "precondition",
            "reason": reason,
        }
        await store.save_result(conn, device_id, p.policy.id, p.row.version, now, 0, [fault], [])
    if prepared is None:
        return None
    state, ctx, applied, rules = prepared
    plan = engine.provision(rules, state, ctx, now, batch_size=batch_size)
    return plan, SessionRun(device_id, applied)


async def record(
    conn: asyncpg.Connection, run: SessionRun, result: dict[str, Any], at: datetime
) -> bool:
    """Keep the outcome per policy, which policy set which value, tags, and queue
    the policies' file downloads. True when a job was queued (run it now)."""
    names = {p.policy.id: p.policy.name for p in run.applied} | {0: "device override"}
    await store.record_sources(
        conn,
        run.device_id,
        [
            # which policy set a value is for operators: a secret's value stays masked
            (
                path,
                s["policy"] or None,
                names.get(s["policy"], "?"),
                mask_value(path, s["value"]) or "",
            )
            for path, s in result.get("set", {}).items()
        ],
        at,
    )
    queued = False
    for p in run.applied:
        pid = p.policy.id
        changes = sum(1 for s in result.get("set", {}).values() if s["policy"] == pid)
        changes += sum(1 for a in result.get("attributes", {}).values() if a["policy"] == pid)
        faults = [f for f in result.get("faults", []) if f["policy"] == pid]
        conflicts = mask_document(
            [c for c in result.get("conflicts", []) if pid in (c["loser"], c["winner"])]
        )
        for tags, change in (
            (p.tags_add, device_query.add_tags),
            (p.tags_remove, device_query.remove_tags),
        ):
            try:
                if tags:
                    await change(conn, run.device_id, tags)
            except ValueError as err:  # loading checks tags; this is the last guard
                faults.append(
                    {"policy": pid, "name": p.row.name, "path": "tags", "reason": str(err)}
                )
        download = p.download
        if download:
            fault = await _queue_file(conn, run.device_id, p, download)
            if isinstance(fault, dict):
                faults.append(fault)
            queued = queued or fault is True
        if p.backup:  # a config backup the policy schedules (acs/services/backups.py)
            queued = (
                await backups.queue_policy_backup(conn, run.device_id, pid, p.backup, at) or queued
            )
        await store.save_result(
            conn, run.device_id, pid, p.row.version, at, changes, faults, conflicts
        )
        for f in faults:
            log(
                logger,
                logging.WARNING,
                "policy_fault",
                device=run.device_id,
                policy=p.row.name,
                path=f["path"],
                reason=f["reason"],
            )
    return queued


async def _queue_file(
    conn: asyncpg.Connection, device_id: str, p: LoadedPolicy, download: dict[str, Any]
) -> bool | dict[str, Any]:
    """Queue the policy's file once per file version; a fault dict when it cannot."""
    record = await files.get_file(conn, download["file"])
    if record is None:
        return {
            "policy": p.policy.id,
            "name": p.row.name,
            "path": download["file"],
            "reason": f"unknown file {download['file']!r}",
        }
    done = await store.results(conn, device_id)
    if (prior := done.get(p.policy.id)) is not None and prior.file_sha256 == record.sha256:
        return False
    await task_store.enqueue(
        conn,
        device_id,
        "download",
        {"fileName": record.name, "fileType": download.get("fileType") or CONFIG_FILE_TYPE},
        unique_key=f"policy-{p.policy.id}-file",
    )
    await store.save_file_queued(conn, device_id, p.policy.id, p.row.version, record.sha256)
    return True


async def dry_run(
    conn: asyncpg.Connection,
    book: PolicyBook,
    policy: LoadedPolicy,
    device_id: str,
    now: datetime,
    sealer: Sealer | None = None,
) -> dict[str, Any] | None:
    """What ``policy`` would change on the device now, from the stored tree (no RPC):
    values to set (from -> to), instances to add or delete, notifications, faults.
    Secrets are compared in clear (with ``sealer``) and shown masked."""
    if await devices.get_device(conn, device_id) is None:
        return None
    matches = bool(await matching(conn, device_id, [policy]))
    prepared = await prepare(conn, book, device_id, None, [], now, only=[policy], sealer=sealer)
    out = engine.Outcome()
    if prepared is None:
        return {
            "matches": matches,
            "set": [],
            "add": [],
            "delete": [],
            "attributes": [],
            "faults": [],
            "conflicts": [],
        }
    state, ctx, _, rules = prepared
    want = engine.desired(rules, state, ctx, out)
    changes = [
        {
            "path": path,
            "from": mask_value(path, state.values.get(path)),
            "to": mask_value(path, value),
        }
        for path, (value, xsd_type, _) in want.params.items()
        if not engine.same_value(state.values.get(path), value, xsd_type or state.types.get(path))
    ]
    return {
        "matches": matches,
        "set": changes,
        "add": [table for table, _, _ in want.adds],
        "delete": [instance for instance, _ in want.deletes],
        "attributes": [
            {"path": p, "from": state.notification.get(p), "to": n}
            for p, (n, _) in want.attributes.items()
            if state.notification.get(p) != n
        ],
        "faults": out.as_dict()["faults"],
        "conflicts": mask_document(out.as_dict()["conflicts"]),
        "tags": {"add": policy.tags_add, "remove": policy.tags_remove},
        "download": policy.download,
    }


# --------------------------------------------------------------------------- shipped defaults

DEFAULT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "periodic-inform",
        "description": (
            "Shipped default. On first contact: periodic Inform every hour, each device at its"
            " own offset within the hour (PeriodicInformTime from a hash of the device id),"
            " so a fleet that comes back after an outage does not keep Informing in step."
        ),
        "events": ["0 BOOTSTRAP"],
        "spec": {
            "parameters": [
                {
                    "path": "ManagementServer.PeriodicInformEnable",
                    "value": "true",
                    "type": "xsd:boolean",
                },
                {
                    "path": "ManagementServer.PeriodicInformInterval",
                    "value": "3600",
                    "type": "xsd:unsignedInt",
                },
                {
                    "path": "ManagementServer.PeriodicInformTime",
                    "value": "{spread_time:3600}",
                    "type": "xsd:dateTime",
                },
            ]
        },
    },
    {
        "name": "connection-request-credentials",
        "description": (
            "Shipped default. On first contact: a connection-request username and a password"
            " of the device's own, derived from this installation's secret; the ACS keeps"
            " them to knock on the device later (CPEs never read passwords back)."
        ),
        "events": ["0 BOOTSTRAP"],
        "spec": {
            "parameters": [
                {
                    "path": "ManagementServer.ConnectionRequestUsername",
                    "value": "{DeviceID.SerialNumber}",
                },
                {
                    "path": "ManagementServer.ConnectionRequestPassword",
                    "value": "{secret:connection-request}",
                },
            ]
        },
    },
]
_DEFAULTS_MARKER = "default-policies-installed"

STUN_POLICY_NAME = "stun-behind-nat"
_STUN_MARKER = "default-stun-policy-installed"
NAT_DETECTED = " OR ".join(
    f'{root}ManagementServer.NATDetected = "{v}"' for root in ROOTS for v in ("true", "1")
)


def stun_policy(settings: Settings) -> dict[str, Any]:
    """The shipped STUN policy, created disabled: for devices that report a NAT,
    STUN on towards this ACS's STUN server, a credential of the device's own, and
    active notification of UDPConnectionRequestAddress. The server's address and
    port are written in from the settings when it is created (a template cannot
    read settings): the operator checks them, then enables it."""
    host = settings.public_host or (settings.host if settings.host != "0.0.0.0" else "127.0.0.1")
    return {
        "name": STUN_POLICY_NAME,
        "description": (
            "Shipped default, disabled: enable it once STUNServerAddress/Port are the ones"
            " your CPEs reach. For devices reporting NATDetected: STUN on towards this ACS,"
            " STUNUsername = the device id, STUNPassword = a secret of the device's own"
            " (derived from this installation's key, as the connection-request password),"
            " and active notification of UDPConnectionRequestAddress, so the ACS learns the"
            " binding and can knock over UDP. With XMPP configured also"
            " ConnReqAllowedJabberIDs = the ACS's JID."
        ),
        "enabled": False,
        "precondition": NAT_DETECTED,
        "events": [],
        "spec": {
            "parameters": [
                {"path": "ManagementServer.STUNEnable", "value": "true", "type": "xsd:boolean"},
                {"path": "ManagementServer.STUNServerAddress", "value": host},
                {
                    "path": "ManagementServer.STUNServerPort",
                    "value": str(settings.stun_port),
                    "type": "xsd:unsignedInt",
                },
                {"path": "ManagementServer.STUNUsername", "value": "{DeviceID.ID}"},
                {"path": "ManagementServer.STUNPassword", "value": "{secret:stun}"},
                *_allowed_jabber_ids(settings),
            ],
            "attributes": [
                {"path": "ManagementServer.UDPConnectionRequestAddress", "notification": 2}
            ],
        },
    }


def _allowed_jabber_ids(settings: Settings) -> list[dict[str, str]]:
    """With XMPP configured: ConnReqAllowedJabberIDs = the ACS's bare JID, so the CPE
    takes connection requests over XMPP from this ACS only (TR-069 K.2.2.2; the
    resource the server binds changes at each login, so the bare JID)."""
    if not (settings.xmpp_server and settings.xmpp_jid):
        return []
    bare = settings.xmpp_jid.partition("/")[0]
    return [{"path": "ManagementServer.ConnReqAllowedJabberIDs", "value": bare}]


async def install_defaults(
    conn: asyncpg.Connection, settings: Settings | None = None
) -> list[str]:
    """Create the shipped default policies once per installation; an operator may
    then edit, disable or delete them, and they are not created again. The STUN
    policy (disabled) has its own marker, so installations from before it get it
    once too."""
    created = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _DEFAULTS_MARKER)
        if not await conn.fetchval("SELECT 1 FROM acs_keys WHERE name = $1", _DEFAULTS_MARKER):
            for policy in DEFAULT_POLICIES:
                if await store.get_by_name(conn, policy["name"]) is None:
                    await store.create(conn, policy, "acs")
                    created.append(policy["name"])
            await conn.execute(
                "INSERT INTO acs_keys (name, value) VALUES ($1, ''::bytea)", _DEFAULTS_MARKER
            )
        if settings is not None and not await conn.fetchval(
            "SELECT 1 FROM acs_keys WHERE name = $1", _STUN_MARKER
        ):
            if await store.get_by_name(conn, STUN_POLICY_NAME) is None:
                await store.create(conn, stun_policy(settings), "acs")
                created.append(STUN_POLICY_NAME)
            await conn.execute(
                "INSERT INTO acs_keys (name, value) VALUES ($1, ''::bytea)", _STUN_MARKER
            )
    return created
