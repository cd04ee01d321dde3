"""Provisioning policies: a desired state, compared with the stored tree, turned
into the fewest RPCs (pure: no I/O).

Per session the engine runs rounds: work out the desired state from the
policies (higher priority wins a parameter; the losers are reported), read
what is stale or unknown, delete and add object instances, then one
SetParameterValues with every value that differs and one
SetParameterAttributes with every notification that differs. A second round
normally finds nothing left to do. A policy whose templates keep changing
what they want (one value built from another it also sets) would run
forever; after ``max_rounds`` the engine stops and faults the policies whose
parameters still move.

Paths in policies may be absolute ("Device.WiFi.SSID.1.SSID") or relative
to the device's root object ("ManagementServer.PeriodicInformEnable"), so one
policy serves TR-181 and TR-098 devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from acs.core import values
from acs.core.plans import Plan, discover, read_values
from acs.core.templates import Context, Template, TemplateError, absolute, render
from acs.cwmp import messages as m

OVERRIDE_PRIORITY = 1 << 30  # per-device overrides sit above every policy
MAX_ROUNDS = 3
BOOTSTRAP = "0 BOOTSTRAP"


def session_events(events: Sequence[str], first_contact: bool) -> list[str]:
    """The events policies are matched against in a session.

    TR-069 sends 0 BOOTSTRAP on a CPE's first contact with an ACS, but a CPE
    that was served by another ACS before (a migrated fleet) or that skips it
    (many field CPEs) never does, and a policy "on first contact" would then
    never reach it. So a session of a device this ACS does not know yet is a
    bootstrap as far as the policies are concerned, and so is every session
    after a bootstrap whose policies did not run to their end (the session was
    cut): the CPE acknowledged its 0 BOOTSTRAP and will not send it again.
    """
    if first_contact and BOOTSTRAP not in events:
        return [BOOTSTRAP, *events]
    return list(events)


@dataclass(frozen=True, slots=True)
class ParameterRule:
    path: str
    value: Template
    xsd_type: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectRule:
    """``count``: exactly that many instances of the table. ``keys``: one instance
    whose key parameters have these values (added when none has), with
    ``parameters`` set on it."""

    path: str  # the table, ending with "."
    count: int | None = None
    keys: tuple[tuple[str, Template], ...] = ()
    parameters: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True, slots=True)
class AttributeRule:
    path: str
    notification: int  # 0 off, 1 passive, 2 active


@dataclass(frozen=True, slots=True)
class RefreshRule:
    path: str  # a parameter, or an object: everything under it
    max_age_s: float


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    name: str
    priority: int = 0
    parameters: tuple[ParameterRule, ...] = ()
    objects: tuple[ObjectRule, ...] = ()
    attributes: tuple[AttributeRule, ...] = ()
    refresh: tuple[RefreshRule, ...] = ()


class StoredParameter(Protocol):
    """What the engine needs of a stored parameter (acs.store.devices.ParameterRecord)."""

    value: str | None
    xsd_type: str | None
    writable: bool | None
    notification: int | None
    value_at: datetime | None
    object: bool


# --------------------------------------------------------------------------- outcome


@dataclass(frozen=True, slots=True)
class PolicyFault:
    policy_id: int
    policy: str
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Conflict:
    path: str
    winner_id: int
    winner: str
    loser_id: int
    loser: str
    wanted: str
    chosen: str


@dataclass(slots=True)
class Outcome:
    set: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (policy, value)
    faults: list[PolicyFault] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    attributes: dict[str, tuple[int, int]] = field(default_factory=dict)
    rounds: int = 0
    rpcs: int = 0

    def fault(self, policy: Policy, path: str, reason: str) -> None:
        f = PolicyFault(policy.id, policy.name, path, reason)
        if f not in self.faults:
            self.faults.append(f)

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": {p: {"policy": pid, "value": v} for p, (pid, v) in self.set.items()},
            "faults": [
                {"policy": f.policy_id, "name": f.policy, "path": f.path, "reason": f.reason}
                for f in self.faults
            ],
            "conflicts": [
                {
                    "path": c.path,
                    "winner": c.winner_id,
                    "loser": c.loser_id,
                    "wanted": c.wanted,
                    "chosen": c.chosen,
                    "reason": f"policy {c.winner!r} outranks {c.loser!r}",
                }
                for c in self.conflicts
            ],
            "added": self.added,
            "deleted": self.deleted,
            "attributes": {
                p: {"policy": pid, "notification": n} for p, (pid, n) in self.attributes.items()
            },
            "rounds": self.rounds,
            "rpcs": self.rpcs,
        }


# --------------------------------------------------------------------------- local state


_BOOL = {"1": "true", "true": "true", "0": "false", "false": "false"}
_INTS = {"xsd:int", "xsd:unsignedInt", "xsd:long", "xsd:unsignedLong"}


def same_value(stored: str | None, wanted: str, xsd_type: str | None) -> bool:
    """Equal as the CPE means them: "1" is "true" for a boolean, "0300" is 300."""
    if stored is None:
        return False
    if stored == wanted:
        return True
    if xsd_type == "xsd:boolean":
        return _BOOL.get(stored.lower()) == _BOOL.get(wanted.lower(), wanted)
    if xsd_type in _INTS:
        try:
            return int(stored) == int(wanted)
        except ValueError:
            return False
    if xsd_type == "xsd:dateTime":
        try:
            return _when(stored) == _when(wanted)
        except ValueError:
            return False
    return False


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(slots=True)
class State:
    """The device as the engine knows it during the session: the stored tree,
    updated with what this session read and set."""

    values: dict[str, str | None]
    types: dict[str, str | None]
    writable: dict[str, bool | None]
    notification: dict[str, int | None]
    value_at: dict[str, datetime | None]
    objects: set[str]
    excluded: set[str] = field(default_factory=set)  # the CPE refused to set these
    excluded_attributes: set[str] = field(default_factory=set)
    # the instance added this session for a keys rule, by (policy, table, keys):
    # if the CPE refuses a key value, the instance still belongs to the rule
    claimed: dict[tuple[int, str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict)

    @classmethod
    def from_tree(cls, tree: Mapping[str, StoredParameter]) -> State:
        leaves = {p: r for p, r in tree.items() if not r.object}
        return cls(
            values={p: r.value for p, r in leaves.items()},
            types={p: r.xsd_type for p, r in leaves.items()},
            writable={p: r.writable for p, r in leaves.items()},
            notification={p: r.notification for p, r in tree.items()},
            value_at={p: r.value_at for p, r in leaves.items()},
            objects={p for p, r in tree.items() if r.object},
        )

    def instances(self, table: str) -> list[int]:
        found = set()
        for obj in self.objects:
            rest = obj[len(table) :]
            if obj.startswith(table) and rest.endswith(".") and rest[:-1].isdigit():
                found.add(int(rest[:-1]))
        return sorted(found)

    def learn(self, values: Mapping[str, m.ParameterValueStruct]) -> None:
        for path, v in values.items():
            self.values[path] = v.value
            self.types[path] = v.xsd_type
            self.writable.setdefault(path, None)
        for path in values:
            parent = path.rsplit(".", 1)[0] + "."
            while parent.count(".") > 1 and parent not in self.objects:
                self.objects.add(parent)
                parent = parent[:-1].rsplit(".", 1)[0] + "."

    def forget(self, prefix: str) -> None:
        for table in (self.values, self.types, self.writable, self.notification, self.value_at):
            for path in [p for p in table if p.startswith(prefix)]:
                del table[path]
        self.objects -= {o for o in self.objects if o.startswith(prefix)}


# --------------------------------------------------------------------------- desired state


@dataclass(slots=True)
class Desired:
    params: dict[str, tuple[str, str | None, Policy]] = field(default_factory=dict)
    adds: list[tuple[str, Policy, ObjectRule]] = field(default_factory=list)
    deletes: list[tuple[str, Policy]] = field(default_factory=list)
    attributes: dict[str, tuple[int, Policy]] = field(default_factory=dict)


def ranked(policies: Iterable[Policy]) -> list[Policy]:
    """Highest priority first; among equals the older policy (lower id) wins."""
    return sorted(policies, key=lambda p: (-p.priority, p.id))


def desired(policies: Sequence[Policy], state: State, ctx: Context, out: Outcome) -> Desired:
    """What the policies want of this device now, given ``state``."""
    want = Desired()

    def claim(path: str, value: str, xsd_type: str | None, policy: Policy) -> None:
        if path in state.excluded:
            return
        if path not in state.values:
            out.fault(policy, path, f"the device has no parameter {path}")
            return
        if state.writable.get(path) is False:
            out.fault(policy, path, f"{path} is not writable on this device")
            return
        problem = values.problem(path, value, xsd_type, state.types.get(path))
        if problem is not None:  # e.g. a template that rendered a word for a number
            out.fault(policy, path, f"not sent: {problem}")
            return
        held = want.params.get(path)
        if held is None:
            want.params[path] = (value, xsd_type, policy)
            return
        chosen, _, winner = held
        if winner.id != policy.id and not same_value(
            chosen, value, xsd_type or state.types.get(path)
        ):
            c = Conflict(path, winner.id, winner.name, policy.id, policy.name, value, chosen)
            if c not in out.conflicts:
                out.conflicts.append(c)

    def rendered(policy: Policy, path: str, template: Template) -> str | None:
        try:
            return render(template, ctx)
        except TemplateError as err:
            out.fault(policy, path, f"template {template.text!r}: {err}")
            return None

    tables_claimed: dict[str, Policy] = {}
    for policy in ranked(policies):
        for rule in policy.parameters:
            path = absolute(rule.path, ctx.root)
            value = rendered(policy, path, rule.value)
            if value is not None:
                claim(path, value, rule.xsd_type, policy)
        for obj in policy.objects:
            table = absolute(obj.path, ctx.root)
            if table not in state.objects:
                out.fault(policy, table, f"the device has no object {table}")
                continue
            if obj.count is not None:
                owner = tables_claimed.setdefault(table, policy)
                if owner.id != policy.id:
                    continue  # the higher policy decides how many there are
                present = state.instances(table)
                if len(present) < obj.count:
                    want.adds.extend((table, policy, obj) for _ in range(obj.count - len(present)))
                for n in present[obj.count :][::-1]:
                    want.deletes.append((f"{table}{n}.", policy))
                continue
            keys = {k: rendered(policy, table + k, t) for k, t in obj.keys}
            if any(v is None for v in keys.values()):
                continue
            # a key value no instance can hold would add an instance every round
            misfits = [
                (k, problem)
                for k, v in keys.items()
                if (problem := values.problem(f"{table}{{i}}.{k}", str(v))) is not None
            ]
            if misfits:
                for k, problem in misfits:
                    out.fault(policy, f"{table}{{i}}.{k}", f"not sent: {problem}")
                continue
            instance = next(
                (
                    f"{table}{n}."
                    for n in state.instances(table)
                    if all(
                        same_value(state.values.get(f"{table}{n}.{k}"), str(v), None)
                        for k, v in keys.items()
                    )
                ),
                None,
            )
            if instance is None:
                instance = state.claimed.get(claim_key(policy, table, keys))
            if instance is None:
                want.adds.append((table, policy, obj))
                continue
            for name, template in obj.parameters:
                value = rendered(policy, instance + name, template)
                if value is not None:
                    claim(instance + name, value, None, policy)
        for attr in policy.attributes:
            path = absolute(attr.path, ctx.root)
            if path not in state.notification:
                out.fault(policy, path, f"the device has no parameter {path}")
            elif path not in want.attributes and path not in state.excluded_attributes:
                want.attributes[path] = (attr.notification, policy)
    return want


def claim_key(
    policy: Policy, table: str, keys: Mapping[str, str | None]
) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    return policy.id, table, tuple(sorted((k, str(v)) for k, v in keys.items()))


def stale(policies: Sequence[Policy], state: State, root: str, now: datetime) -> list[str]:
    """Parameters to read before deciding: refresh rules past their age, and
    parameters a policy sets whose value was never read."""
    paths: list[str] = []
    for policy in policies:
        for rule in policy.refresh:
            prefix = absolute(rule.path, root)
            for path, at in state.value_at.items():
                if (path == prefix or (prefix.endswith(".") and path.startswith(prefix))) and (
                    at is None or (now - at).total_seconds() > rule.max_age_s
                ):
                    paths.append(path)
        for p in policy.parameters:
            path = absolute(p.path, root)
            if path in state.values and state.values[path] is None:
                paths.append(path)
    return list(dict.fromkeys(paths))


# --------------------------------------------------------------------------- the plan


def provision(
    policies: Sequence[Policy],
    state: State,
    ctx: Context,
    now: datetime,
    *,
    batch_size: int = 100,
    max_rounds: int = MAX_ROUNDS,
) -> Plan:
    """The RPCs that bring the device to what ``policies`` want; returns the
    Outcome as a dict. ``ctx.value_of`` must read ``state`` (see context_for)."""
    out = Outcome()
    reads = stale(policies, state, ctx.root, now)
    if reads:
        got: dict[str, m.ParameterValueStruct] = {}
        _, _, rpcs = yield from read_values(reads, batch_size, values=got)
        out.rpcs += rpcs
        state.learn(got)
    for round_no in range(1, max_rounds + 1):
        out.rounds = round_no
        want = desired(policies, state, ctx, out)
        extra: dict[str, tuple[str, str | None, Policy]] = {}
        changed = False
        for instance, policy in want.deletes:
            out.rpcs += 1
            resp = yield m.DeleteObject(object_name=instance)
            if isinstance(resp, m.Fault):
                out.fault(
                    policy, instance, f"DeleteObject refused: {resp.fault_code} {resp.fault_string}"
                )
                continue
            state.forget(instance)
            out.deleted.append(instance)
            changed = True
        for table, policy, rule in want.adds:
            out.rpcs += 1
            resp = yield m.AddObject(object_name=table)
            if isinstance(resp, m.Fault):
                out.fault(
                    policy, table, f"AddObject refused: {resp.fault_code} {resp.fault_string}"
                )
                continue
            assert isinstance(resp, m.AddObjectResponse)
            instance = f"{table}{resp.instance_number}."
            learned: dict[str, m.ParameterValueStruct] = {}
            found = yield from discover(instance, batch_size, values=learned)
            out.rpcs += found["rpcs"]
            state.objects.add(instance)
            state.learn(learned)
            out.added.append(instance)
            changed = True
            rendered_keys: dict[str, str | None] = {}
            for name, template in (*rule.keys, *rule.parameters):
                try:
                    value = render(template, ctx)
                except TemplateError as err:
                    out.fault(policy, instance + name, f"template {template.text!r}: {err}")
                    continue
                problem = values.problem(
                    instance + name, value, None, state.types.get(instance + name)
                )
                if problem is not None:
                    out.fault(policy, instance + name, f"not sent: {problem}")
                    continue
                extra[instance + name] = (value, None, policy)
            for name, _ in rule.keys:
                rendered_keys[name] = (
                    extra[instance + name][0] if instance + name in extra else None
                )
            if rule.keys:
                state.claimed[claim_key(policy, table, rendered_keys)] = instance
        todo = {
            path: (value, values.wire_type(path, xsd_type, state.types.get(path)), policy)
            for path, (value, xsd_type, policy) in {**want.params, **extra}.items()
            if path not in state.excluded
            and not same_value(state.values.get(path), value, xsd_type or state.types.get(path))
        }
        if todo:
            changed = True
            out.rpcs += 1
            resp = yield m.SetParameterValues(
                parameter_list=[m.ParameterValueStruct(p, v, t) for p, (v, t, _) in todo.items()],
                parameter_key="",
            )
            if isinstance(resp, m.Fault):
                if not resp.set_parameter_values_faults:
                    for path, (_, _, policy) in todo.items():
                        out.fault(
                            policy,
                            path,
                            f"SetParameterValues refused: {resp.fault_code} {resp.fault_string}",
                        )
                    return out.as_dict()
                # the CPE named the values it refused; the rest goes in the next round
                for f in resp.set_parameter_values_faults:
                    state.excluded.add(f.parameter_name)
                    owner = todo.get(f.parameter_name)
                    if owner is not None:
                        out.fault(
                            owner[2],
                            f.parameter_name,
                            f"the CPE refused the value: {f.fault_code} {f.fault_string}",
                        )
            else:
                for path, (value, xsd_type, policy) in todo.items():
                    state.values[path] = value
                    state.types[path] = xsd_type
                    out.set[path] = (policy.id, value)
        attrs = {
            path: (n, policy)
            for path, (n, policy) in want.attributes.items()
            if state.notification.get(path) != n
        }
        if attrs:
            out.rpcs += 1
            resp = yield m.SetParameterAttributes(
                parameter_list=[
                    m.SetParameterAttributesStruct(p, True, n, False) for p, (n, _) in attrs.items()
                ]
            )
            if isinstance(resp, m.Fault):
                for path, (_, policy) in attrs.items():
                    state.excluded_attributes.add(path)
                    out.fault(
                        policy,
                        path,
                        f"SetParameterAttributes refused: {resp.fault_code} {resp.fault_string}",
                    )
            else:
                changed = True
                for path, (n, policy) in attrs.items():
                    state.notification[path] = n
                    out.attributes[path] = (policy.id, n)
        if not changed:
            return out.as_dict()
    # every round changed something: see whether anything still moves
    want = desired(policies, state, ctx, out)
    for path, (wanted, wanted_type, holder) in want.params.items():
        if path not in state.excluded and not same_value(
            state.values.get(path), wanted, wanted_type or state.types.get(path)
        ):
            out.fault(
                holder,
                path,
                f"policy {holder.name!r} does not converge: after "
                f"{max_rounds} rounds it still wants {path} = {wanted!r}",
            )
    return out.as_dict()


def context_for(
    state: State, device_id: str, root: str, fields: dict[str, str | None], key: bytes
) -> Context:
    """A template context that reads the session's current state."""
    return Context(device_id, root, fields, state.values.get, key)
