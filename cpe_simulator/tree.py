"""One simulated CPE's parameter tree and the CPE side of the parameter RPCs (TR-069 A.3.2).

Density is the design goal: ten thousand trees share one :class:`Template`, and a
tree stores only what differs from it - values set by the ACS or by the device,
attributes that left their default, and tables whose instances changed. A
fresh device therefore costs a few hundred bytes; identity-derived values (MACs,
serial, SSIDs) and live ones (UpTime, NumberOfEntries) are computed on read.

The runtime owns sessions and events; it calls the RPC methods here and turns a
raised :class:`~cpe_simulator.faults.CpeFault` into a SOAP Fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from acs.cwmp.messages import (
    ParameterAttributeStruct,
    ParameterInfoStruct,
    ParameterValueStruct,
    SetParameterAttributesStruct,
    SetParameterValuesFault,
)
from cpe_simulator.datamodel import (
    Identity,
    ObjectDef,
    ParamDef,
    Template,
    check_value,
    local_type,
)
from cpe_simulator.faults import CpeFault, parameter_fault

# What a typical gateway answers to GetRPCMethods; the runtime may pass its own list.
DEFAULT_RPC_METHODS: tuple[str, ...] = (
    "GetRPCMethods",
    "SetParameterValues",
    "GetParameterValues",
    "GetParameterNames",
    "SetParameterAttributes",
    "GetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "Download",
    "FactoryReset",
    "ScheduleInform",
)

_NO_ACCESS: tuple[str, ...] = ()
_MAX_NOTIFICATION = 6  # 3-6 exist in later amendments; anything else is malformed
_TRUE = frozenset({"true", "1"})

# One value-or-default attribute pair, stored only when it differs from the default.
_Attr = tuple[int, tuple[str, ...]]


class ParameterTree:
    """The parameter tree of one CPE, with copy-on-write overrides over a shared template."""

    __slots__ = (
        "template",
        "identity",
        "root",
        "rpc_methods",
        "_clock",
        "_boot",
        "_acs_url",
        "_cr_url",
        "_cr_username",
        "_cr_password",
        "_acs_username",
        "_acs_password",
        "_values",
        "_attrs",
        "_instances",
        "_next_instance",
        "_changes",
        "_active_change",
    )

    def __init__(
        self,
        template: Template,
        identity: Identity,
        *,
        acs_url: str,
        connection_request_url: str,
        connection_request_username: str = "",
        connection_request_password: str = "",
        acs_username: str = "",
        acs_password: str = "",
        rpc_methods: tuple[str, ...] = DEFAULT_RPC_METHODS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.template = template
        self.identity = identity
        self.root = template.root
        self.rpc_methods = rpc_methods
        self._clock = clock
        self._boot = clock()
        self._acs_url = acs_url
        self._cr_url = connection_request_url
        self._cr_username = connection_request_username
        self._cr_password = connection_request_password
        self._acs_username = acs_username
        self._acs_password = acs_password
        # Overrides; None until first needed so a fresh device holds no containers.
        self._values: dict[str, str] | None = None
        self._attrs: dict[str, _Attr] | None = None
        self._instances: dict[str, tuple[int, ...]] | None = None
        self._next_instance: dict[str, int] | None = None
        self._changes: dict[str, None] | None = None  # insertion-ordered set
        self._active_change = False

    # ------------------------------------------------------------------ path resolution

    def _instances_of(self, table: str) -> tuple[int, ...]:
        if self._instances is not None:
            own = self._instances.get(table)
            if own is not None:
                return own
        return self.template.instances.get(table, ())

    def _object(self, path: str) -> ObjectDef | None:
        """The definition of an existing object path ending in '.', else None."""
        if not path.endswith(".") or not path.startswith(self.root):
            return None
        segments = path[:-1].split(".")
        prefix = ""
        for i, seg in enumerate(segments):
            if seg.isdigit():
                # Instance numbers are canonical decimals of an existing row.
                if seg != str(int(seg)) or int(seg) not in self._instances_of(prefix):
                    return None
                segments[i] = "{i}"
            elif not seg:
                return None
            prefix += seg + "."
        return self.template.objects.get(".".join(segments) + ".")

    def _param(self, path: str) -> ParamDef | None:
        obj_path, dot, name = path.rpartition(".")
        if not dot or not name:
            return None
        obj = self._object(obj_path + ".")
        return None if obj is None else obj.params_by_name.get(name)

    def _walk(self, path: str, obj: ObjectDef) -> Iterator[tuple[str, ParamDef | None, bool]]:
        """(name, definition or None for objects, writable) for an object and all below it."""
        objects = self.template.objects
        yield path, None, obj.writable
        if obj.kind == "table":
            row = objects[obj.pattern + "{i}."]
            for n in self._instances_of(path):
                yield from self._walk(f"{path}{n}.", row)
            return
        for pdef in obj.params:
            yield path + pdef.name, pdef, pdef.writable
        for child in obj.children:
            yield from self._walk(path + child, objects[obj.pattern + child])

    def _expand(self, name: str) -> list[tuple[str, ParamDef]]:
        """A full or partial parameter name -> the parameters it names; 9005 if none."""
        if name == "":
            name = self.root
        if name.endswith("."):
            obj = self._object(name)
            if obj is None:
                raise CpeFault(9005)
            return [(p, d) for p, d, _w in self._walk(name, obj) if d is not None]
        pdef = self._param(name)
        if pdef is None:
            raise CpeFault(9005)
        return [(name, pdef)]

    # ------------------------------------------------------------------ values

    def _base_value(self, path: str, pdef: ParamDef) -> str:
        """The value without this device's overrides."""
        if pdef.counts is not None:
            return str(len(self._instances_of(path[: path.rfind(".") + 1] + pdef.counts)))
        key = self.template.identity.get(path)
        if key is not None:
            return self._identity_value(key)
        value = self.template.defaults.get(path)
        if value is not None:
            return value
        if pdef.name == "Alias" and not pdef.default:
            # TR-069 3.6.1: a CPE-assigned alias of an instance it created is "cpe-<n>".
            return "cpe-" + path.rsplit(".", 2)[-2]
        return pdef.default

    def _value(self, path: str, pdef: ParamDef) -> str:
        if self._values is not None:
            value = self._values.get(path)
            if value is not None:
                return value
        return self._base_value(path, pdef)

    def _identity_value(self, key: str) -> str:
        match key:
            case "uptime":
                return str(max(0, int(self._clock() - self._boot)))
            case "current_time":
                now = datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)
                return now.isoformat().replace("+00:00", "Z")
            case "acs_url":
                return self._acs_url
            case "connection_request_url":
                return self._cr_url
            case "connection_request_username":
                return self._cr_username
            case "connection_request_password":
                return self._cr_password
            case "acs_username":
                return self._acs_username
            case "acs_password":
                return self._acs_password
        value = self.identity.value(key)
        if value is None:
            raise ValueError(f"template identity key {key!r} is unknown")
        return value

    def _store(self, path: str, pdef: ParamDef, value: str) -> None:
        if self._values is None:
            self._values = {}
        self._values.pop(path, None)
        if value != self._base_value(path, pdef):
            self._values[path] = value
        elif not self._values:
            self._values = None

    def value(self, path: str) -> str:
        """The real value of a parameter (hidden ones included), for the runtime's own use."""
        pdef = self._param(path)
        if pdef is None:
            raise CpeFault(9005)
        return self._value(path, pdef)

    def _root_param(self, rel: str) -> str:
        return self.value(self.root + rel)

    # ------------------------------------------------------------------ RPCs

    def get_rpc_methods(self) -> list[str]:
        return list(self.rpc_methods)

    def get_parameter_names(self, path: str, next_level: bool) -> list[ParameterInfoStruct]:
        """GetParameterNames (A.3.2.3)."""
        if path == "":
            if next_level:
                return [ParameterInfoStruct(self.root, False)]
            path = self.root
        if not path.endswith("."):
            pdef = self._param(path)
            if pdef is None:
                raise CpeFault(9005)
            if next_level:
                raise CpeFault(9003, "NextLevel true is invalid for a parameter name")
            return [ParameterInfoStruct(path, pdef.writable)]
        obj = self._object(path)
        if obj is None:
            raise CpeFault(9005)
        if not next_level:
            return [ParameterInfoStruct(name, w) for name, _d, w in self._walk(path, obj)]
        objects = self.template.objects
        if obj.kind == "table":
            row = objects[obj.pattern + "{i}."]
            return [
                ParameterInfoStruct(f"{path}{n}.", row.writable) for n in self._instances_of(path)
            ]
        out = [ParameterInfoStruct(path + p.name, p.writable) for p in obj.params]
        out.extend(
            ParameterInfoStruct(path + child, objects[obj.pattern + child].writable)
            for child in obj.children
        )
        return out

    def get_parameter_values(self, names: Iterable[str]) -> list[ParameterValueStruct]:
        """GetParameterValues (A.3.2.2); hidden parameters read as ""."""
        out: list[ParameterValueStruct] = []
        for name in names:
            for path, pdef in self._expand(name):
                value = "" if pdef.hidden else self._value(path, pdef)
                out.append(ParameterValueStruct(path, value, pdef.xsd_type))
        return out

    def set_parameter_values(self, params: list[ParameterValueStruct], parameter_key: str) -> int:
        """SetParameterValues (A.3.2.1): all or nothing. Returns Status 0 (applied)."""
        faults: list[SetParameterValuesFault] = []
        seen: set[str] = set()
        checked: list[tuple[str, ParamDef, str]] = []
        for struct in params:
            name = struct.name
            if name in seen:
                raise CpeFault(9003, f"Invalid arguments: {name} appears more than once")
            seen.add(name)
            pdef = self._param(name)
            if pdef is None:
                faults.append(parameter_fault(name, 9005))
                continue
            if not pdef.writable:
                faults.append(parameter_fault(name, 9008))
                continue
            if struct.xsd_type and local_type(struct.xsd_type) != local_type(pdef.xsd_type):
                faults.append(parameter_fault(name, 9006))
                continue
            code = check_value(pdef, struct.value, self._enum_ref_value(name, pdef))
            if code is not None:
                faults.append(parameter_fault(name, code))
                continue
            checked.append((name, pdef, struct.value))
        if faults:
            raise CpeFault(9003, set_parameter_values_faults=faults)
        for name, pdef, value in checked:
            if not pdef.command:  # a trigger acts, it does not keep its value
                self._store(name, pdef, value)
        self._set_parameter_key(parameter_key)
        return 0

    def _enum_ref_value(self, path: str, pdef: ParamDef) -> str | None:
        if pdef.facets is None or not pdef.facets.enum_ref:
            return None
        sibling = path[: path.rfind(".") + 1] + pdef.facets.enum_ref
        sdef = self._param(sibling)
        return None if sdef is None else self._value(sibling, sdef)

    def _set_parameter_key(self, parameter_key: str) -> None:
        path = self.root + "ManagementServer.ParameterKey"
        pdef = self._param(path)
        if pdef is not None:
            self._store(path, pdef, parameter_key)

    # ------------------------------------------------------------------ attributes

    def _attr(self, path: str, pdef: ParamDef) -> _Attr:
        if self._attrs is not None:
            attr = self._attrs.get(path)
            if attr is not None:
                return attr
        return pdef.default_notification, _NO_ACCESS

    def notification(self, path: str) -> int:
        """The Notification attribute of a parameter (0 off, 1 passive, 2 active)."""
        pdef = self._param(path)
        if pdef is None:
            raise CpeFault(9005)
        return self._attr(path, pdef)[0]

    def get_parameter_attributes(self, names: Iterable[str]) -> list[ParameterAttributeStruct]:
        """GetParameterAttributes (A.3.2.5); partial paths expand."""
        out: list[ParameterAttributeStruct] = []
        for name in names:
            for path, pdef in self._expand(name):
                notification, access = self._attr(path, pdef)
                out.append(ParameterAttributeStruct(path, notification, list(access)))
        return out

    def set_parameter_attributes(self, structs: list[SetParameterAttributesStruct]) -> None:
        """SetParameterAttributes (A.3.2.4), validated in full before anything changes.

        A named parameter whose model forbids the request (active notification on a
        "canDeny" parameter such as UpTime, turning off a "forceEnabled" one) gets
        9009; through a partial path such parameters are skipped, as gateways do,
        so that "Device." passive/active on everything remains usable.
        """
        planned: list[tuple[str, ParamDef, SetParameterAttributesStruct]] = []
        for struct in structs:
            if struct.notification_change and not 0 <= struct.notification <= _MAX_NOTIFICATION:
                raise CpeFault(9003, f"Invalid arguments: Notification {struct.notification}")
            partial = struct.name == "" or struct.name.endswith(".")
            for path, pdef in self._expand(struct.name):
                if struct.notification_change and _rejects(pdef, struct.notification):
                    if partial:
                        continue
                    raise CpeFault(9009)
                planned.append((path, pdef, struct))
        for path, pdef, struct in planned:
            notification, access = self._attr(path, pdef)
            if struct.notification_change:
                notification = struct.notification
            if struct.access_list_change:
                access = tuple(struct.access_list)
            if self._attrs is None:
                self._attrs = {}
            if (notification, access) == (pdef.default_notification, _NO_ACCESS):
                self._attrs.pop(path, None)
            else:
                self._attrs[path] = (notification, access)
        if self._attrs == {}:
            self._attrs = None

    # ------------------------------------------------------------------ objects

    def add_object(self, object_name: str, parameter_key: str) -> int:
        """AddObject (A.3.2.6): the new instance number; its parameters take defaults."""
        obj = self._object(object_name)
        if obj is None:
            raise CpeFault(9005)
        if obj.kind != "table" or not obj.writable:
            raise CpeFault(9003, f"Invalid arguments: {object_name} is not a writable table")
        current = self._instances_of(object_name)
        if obj.max_entries is not None and len(current) >= obj.max_entries:
            raise CpeFault(9004)
        number = self._fresh_instance_number(object_name, current)
        if self._instances is None:
            self._instances = {}
        self._instances[object_name] = (*current, number)
        if self._next_instance is None:
            self._next_instance = {}
        self._next_instance[object_name] = number + 1
        self._set_parameter_key(parameter_key)
        return number

    def _fresh_instance_number(self, table: str, current: tuple[int, ...]) -> int:
        # Numbers are never reused while the device runs, so a deleted row's
        # number cannot come back with someone else's configuration.
        if self._next_instance is not None and table in self._next_instance:
            return self._next_instance[table]
        return max((*current, *self.template.instances.get(table, ())), default=0) + 1

    def delete_object(self, object_name: str, parameter_key: str) -> None:
        """DeleteObject (A.3.2.7): removes the instance and everything below it."""
        obj = self._object(object_name)
        if obj is None:
            raise CpeFault(9005)
        if obj.kind != "instance" or not obj.writable:
            raise CpeFault(9003, f"Invalid arguments: {object_name} is not a deletable instance")
        table, _, number = object_name[:-1].rpartition(".")
        table += "."
        remaining = tuple(n for n in self._instances_of(table) if n != int(number))
        if self._instances is None:
            self._instances = {}
        if self._next_instance is None:
            self._next_instance = {}
        self._next_instance.setdefault(
            table, self._fresh_instance_number(table, self._instances_of(table))
        )
        self._instances[table] = remaining
        for store in (
            self._values,
            self._attrs,
            self._changes,
            self._instances,
            self._next_instance,
        ):
            if store:
                for key in [k for k in store if k.startswith(object_name)]:
                    del store[key]
        self._set_parameter_key(parameter_key)

    def add_instance_internal(self, table: str, values: dict[str, str]) -> int:
        """The device adds a row to one of its own read-only tables (an installed
        deployment unit, its execution units); ``values`` by parameter name."""
        obj = self._object(table)
        if obj is None or obj.kind != "table":
            raise CpeFault(9005)
        current = self._instances_of(table)
        number = self._fresh_instance_number(table, current)
        if self._instances is None:
            self._instances = {}
        self._instances[table] = (*current, number)
        if self._next_instance is None:
            self._next_instance = {}
        self._next_instance[table] = number + 1
        for name, value in values.items():
            path = f"{table}{number}.{name}"
            pdef = self._param(path)
            if pdef is None:
                raise CpeFault(9005)
            self._store(path, pdef, value)  # a new row: no value change to notify
        return number

    def delete_instance_internal(self, instance: str) -> None:
        """The device removes a row of one of its own tables (an uninstalled DU)."""
        obj = self._object(instance)
        if obj is None or obj.kind != "instance":
            raise CpeFault(9005)
        table, _, number = instance[:-1].rpartition(".")
        table += "."
        if self._next_instance is None:
            self._next_instance = {}
        self._next_instance.setdefault(
            table, self._fresh_instance_number(table, self._instances_of(table))
        )
        if self._instances is None:
            self._instances = {}
        self._instances[table] = tuple(n for n in self._instances_of(table) if n != int(number))
        for store in (self._values, self._attrs, self._changes, self._instances):
            if store:
                for key in [k for k in store if k.startswith(instance)]:
                    del store[key]

    def instances(self, table: str) -> tuple[int, ...]:
        """The instance numbers of a table, in order; () when the model lacks it."""
        return self._instances_of(table) if self._object(table) is not None else ()
    def rebuild_table_internal(self, table: str, count: int) -> list[str]:
        """The device itself refills a table the ACS cannot write (a test's results,
        e.g. TraceRoute.RouteHops.): rows 1..count, the old rows' values gone.
        The new instance paths, for set_value_internal."""
        for store in (self._values, self._attrs, self._changes):
            if store:
                for key in [k for k in store if k.startswith(table)]:
                    del store[key]
        if self._instances is None:
            self._instances = {}
        self._instances[table] = tuple(range(1, count + 1))
        if self._next_instance is None:
            self._next_instance = {}
        self._next_instance[table] = count + 1
        return [f"{table}{n}." for n in range(1, count + 1)]

    # ------------------------------------------------------------------ device life

    def factory_reset(self) -> None:
        """Back to the template and identity: values, attributes, tables, uptime.

        The installed firmware survives: a reset erases configuration, not the image.
        """
        firmware_path = self.root + "DeviceInfo.SoftwareVersion"
        firmware = self.software_version
        self._values = None
        self._attrs = None
        self._instances = None
        self._next_instance = None
        self._changes = None
        self._active_change = False
        self._boot = self._clock()
        if firmware != self.identity.software_version:
            self._values = {firmware_path: firmware}

    def reboot(self) -> None:
        """A reboot keeps the configuration and restarts UpTime."""
        self._boot = self._clock()

    def set_value_internal(self, path: str, value: str) -> None:
        """The device itself changes a value (firmware install, link event, ...).

        Unlike an ACS write this counts as a value change for notification
        (TR-069 3.2.1: changes made by the ACS are not notified back to it).
        Setting UpTime moves the boot time instead of freezing the counter.
        """
        pdef = self._param(path)
        if pdef is None:
            raise CpeFault(9005)
        old = self._value(path, pdef)
        if self.template.identity.get(path) == "uptime":
            self._boot = self._clock() - int(value)
        else:
            self._store(path, pdef, value)
        if old == value:
            return
        notification = self._attr(path, pdef)[0]
        if notification:
            if self._changes is None:
                self._changes = {}
            self._changes[path] = None
            if notification == 2:
                self._active_change = True

    def take_value_changes(self) -> list[str]:
        """Paths changed (with notification on) since the last call; clears them.

        Call after the Inform carrying them was acknowledged.
        """
        changes = list(self._changes or ())
        self._changes = None
        self._active_change = False
        return changes

    def has_value_changes(self) -> bool:
        """True when a parameter with notification on changed since the last Inform."""
        return bool(self._changes)

    def has_active_notification_change(self) -> bool:
        """True when a parameter with active notification changed: start a session."""
        return self._active_change

    def inform_parameters(self) -> list[ParameterValueStruct]:
        """The Inform ParameterList: Forced Inform parameters, then pending value changes."""
        out: list[ParameterValueStruct] = []
        listed: set[str] = set()
        pending = list(self._changes or ())
        for path in (*self.template.forced_inform, *pending):
            if path in listed:
                continue
            pdef = self._param(path)
            if pdef is None:  # a changed parameter deleted since
                continue
            listed.add(path)
            value = "" if pdef.hidden else self._value(path, pdef)
            out.append(ParameterValueStruct(path, value, pdef.xsd_type))
        return out

    # ------------------------------------------------------------------ hot values

    @property
    def parameter_key(self) -> str:
        return self._root_param("ManagementServer.ParameterKey")

    @property
    def periodic_inform_enable(self) -> bool:
        return self._root_param("ManagementServer.PeriodicInformEnable") in _TRUE

    @property
    def periodic_inform_interval(self) -> int:
        return int(self._root_param("ManagementServer.PeriodicInformInterval"))

    @property
    def periodic_inform_time(self) -> datetime | None:
        """None for the Unknown Time (no phase requested)."""
        text = self._root_param("ManagementServer.PeriodicInformTime")
        if not text or text.startswith("0001-01-01"):
            return None
        return datetime.fromisoformat(text)

    @property
    def acs_url(self) -> str:
        return self._root_param("ManagementServer.URL")

    @property
    def connection_request_url(self) -> str:
        return self._root_param("ManagementServer.ConnectionRequestURL")

    @property
    def connection_request_username(self) -> str:
        return self._root_param("ManagementServer.ConnectionRequestUsername")

    @property
    def connection_request_password(self) -> str:
        return self._root_param("ManagementServer.ConnectionRequestPassword")

    @property
    def management_server_username(self) -> str:
        return self._root_param("ManagementServer.Username")

    @property
    def management_server_password(self) -> str:
        return self._root_param("ManagementServer.Password")

    @property
    def software_version(self) -> str:
        return self._root_param("DeviceInfo.SoftwareVersion")

    @property
    def provisioning_code(self) -> str:
        return self._root_param("DeviceInfo.ProvisioningCode")

    @property
    def uptime(self) -> int:
        return max(0, int(self._clock() - self._boot))


def _rejects(pdef: ParamDef, notification: int) -> bool:
    """Whether the model lets this CPE refuse the requested Notification."""
    if pdef.active_notify == "canDeny":
        return notification == 2
    if pdef.active_notify == "forceEnabled":
        return notification != 2
    return False
