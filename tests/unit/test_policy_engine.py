"""The provisioning engine (acs.core.policies): desired state, conflicts, faults and
the RPCs it asks for, driven against a tiny in-memory CPE. Pure: no DB, no network."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from acs.core.policies import (
    MAX_ROUNDS,
    AttributeRule,
    Conflict,
    ObjectRule,
    Outcome,
    ParameterRule,
    Policy,
    PolicyFault,
    RefreshRule,
    State,
    context_for,
    desired,
    provision,
    ranked,
    same_value,
    stale,
)
from acs.core.templates import parse_template
from acs.cwmp import messages as m

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
FRESH = NOW - timedelta(seconds=10)
KEY = b"test-instance-key"
DEVICE = "A0B1C2-MF286D-SN0001ABCD"
FIELDS: dict[str, str | None] = {
    "DeviceID.ID": DEVICE,
    "DeviceID.OUI": "A0B1C2",
    "DeviceID.ProductClass": "MF286D",
    "DeviceID.SerialNumber": "SN0001ABCD",
    "DeviceID.Manufacturer": "Acme",
    "SoftwareVersion": "1.2.3",
    "HardwareVersion": "HW-V1",
    "ProvisioningCode": "PC42",
}


# --------------------------------------------------------------------------- fakes


@dataclass
class Rec:
    """A stored parameter (the engine's StoredParameter protocol)."""

    value: str | None = None
    xsd_type: str | None = "xsd:string"
    writable: bool | None = True
    notification: int | None = 0
    value_at: datetime | None = FRESH
    object: bool = False


def leaf(
    value: str | None,
    xsd_type: str | None = "xsd:string",
    *,
    writable: bool | None = True,
    notification: int | None = 0,
    value_at: datetime | None = FRESH,
) -> Rec:
    return Rec(value, xsd_type, writable, notification, value_at, False)


def obj(*, writable: bool = True) -> Rec:
    return Rec(None, None, writable, 0, None, True)


def tree(leaves: dict[str, Rec], extra_objects: Iterable[str] = ()) -> dict[str, Rec]:
    """``leaves`` plus every object above them (and ``extra_objects``)."""
    out: dict[str, Rec] = {}
    for path in [*leaves, *extra_objects]:
        parts = path.split(".")
        for i in range(1, len(parts)):
            out.setdefault(".".join(parts[:i]) + ".", obj())
    for path in extra_objects:
        out.setdefault(path, obj())
    out.update(leaves)
    return out


@dataclass
class FakeCPE:
    """Answers the engine's RPCs from an in-memory tree.

    ``templates`` give the parameters (value, type) a new instance of a table gets;
    ``refuse`` names parameters whose new value the CPE rejects (per-parameter
    SetParameterValuesFault); ``spv_fault`` makes every SetParameterValues fail as
    a whole; ``spa_fault``/``add_fault``/``delete_fault`` do that for the others.
    """

    tree: dict[str, Rec]
    templates: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    refuse: dict[str, int] = field(default_factory=dict)
    spv_fault: int | None = None
    spa_fault: int | None = None
    add_fault: int | None = None
    delete_fault: int | None = None
    unreadable: set[str] = field(default_factory=set)
    requests: list[m.Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tree = copy.deepcopy(self.tree)

    # what the ACS has stored: a copy of the CPE's tree, with some differences
    def state(
        self,
        stored: dict[str, str | None] | None = None,
        value_at: dict[str, datetime | None] | None = None,
    ) -> State:
        known = copy.deepcopy(self.tree)
        for path, value in (stored or {}).items():
            known[path].value = value
        for path, at in (value_at or {}).items():
            known[path].value_at = at
        return State.from_tree(known)

    def value(self, path: str) -> str | None:
        return self.tree[path].value

    def kinds(self) -> list[str]:
        return [type(r).__name__ for r in self.requests]

    def of(self, kind: type[m.Message]) -> list[Any]:
        return [r for r in self.requests if isinstance(r, kind)]

    def instances(self, table: str) -> list[int]:
        return sorted(
            int(p[len(table) : -1])
            for p in self.tree
            if p.startswith(table) and p.endswith(".") and p[len(table) : -1].isdigit()
        )

    def handle(self, req: m.Message) -> m.Message:
        self.requests.append(req)
        if isinstance(req, m.GetParameterValues):
            got: list[m.ParameterValueStruct] = []
            for name in req.parameter_names:
                matches = [
                    p
                    for p, r in self.tree.items()
                    if not r.object and (p == name or (name.endswith(".") and p.startswith(name)))
                ]
                if not matches or name in self.unreadable:
                    return m.Fault(9005, "Invalid parameter name")
                for p in matches:
                    r = self.tree[p]
                    got.append(m.ParameterValueStruct(p, r.value or "", r.xsd_type or "xsd:string"))
            return m.GetParameterValuesResponse(parameter_list=got)
        if isinstance(req, m.GetParameterNames):
            if req.parameter_path not in self.tree:
                return m.Fault(9005, "Invalid parameter name")
            return m.GetParameterNamesResponse(
                parameter_list=[
                    m.ParameterInfoStruct(p, bool(r.writable))
                    for p, r in self.tree.items()
                    if p.startswith(req.parameter_path)
                ]
            )
        if isinstance(req, m.SetParameterValues):
            if self.spv_fault is not None:
                return m.Fault(self.spv_fault, "Internal error")
            faults = [
                m.SetParameterValuesFault(v.name, self.refuse[v.name], "Invalid parameter value")
                for v in req.parameter_list
                if v.name in self.refuse
            ]
            faults += [
                m.SetParameterValuesFault(v.name, 9005, "Invalid parameter name")
                for v in req.parameter_list
                if v.name not in self.tree
            ]
            faults += [
                m.SetParameterValuesFault(v.name, 9008, "Attempt to set a non-writable parameter")
                for v in req.parameter_list
                if v.name in self.tree and self.tree[v.name].writable is False
            ]
            if faults:
                return m.Fault(9003, "Invalid arguments", faults)
            for v in req.parameter_list:  # all or nothing, as TR-069 says
                self.tree[v.name].value = v.value
                self.tree[v.name].xsd_type = v.xsd_type
            return m.SetParameterValuesResponse(status=0)
        if isinstance(req, m.SetParameterAttributes):
            if self.spa_fault is not None:
                return m.Fault(self.spa_fault, "Request denied")
            for a in req.parameter_list:
                if a.notification_change:
                    self.tree[a.name].notification = a.notification
            return m.SetParameterAttributesResponse()
        if isinstance(req, m.AddObject):
            if self.add_fault is not None:
                return m.Fault(self.add_fault, "Resources exceeded")
            table = req.object_name
            n = max(self.instances(table), default=0) + 1
            instance = f"{table}{n}."
            self.tree[instance] = obj()
            for name, (value, xsd_type) in self.templates.get(table, {}).items():
                self.tree[instance + name] = leaf(value, xsd_type)
            return m.AddObjectResponse(instance_number=n, status=0)
        if isinstance(req, m.DeleteObject):
            if self.delete_fault is not None:
                return m.Fault(self.delete_fault, "Request denied")
            for p in [p for p in self.tree if p.startswith(req.object_name)]:
                del self.tree[p]
            return m.DeleteObjectResponse(status=0)
        raise AssertionError(f"unexpected request {req!r}")


def drive(plan: Any, cpe: FakeCPE) -> dict[str, Any]:
    """Run a plan to its end against ``cpe``; the plan's outcome dict."""
    try:
        req = next(plan)
        while True:
            req = plan.send(cpe.handle(req))
    except StopIteration as stop:
        return stop.value


def run(
    policies: list[Policy],
    cpe: FakeCPE,
    state: State | None = None,
    *,
    root: str = "Device.",
    fields: dict[str, str | None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    state = state if state is not None else cpe.state()
    ctx = context_for(state, DEVICE, root, FIELDS if fields is None else fields, KEY)
    return drive(provision(policies, state, ctx, NOW, **kwargs), cpe)


def param(path: str, value: str, xsd_type: str | None = None) -> ParameterRule:
    return ParameterRule(path, parse_template(value), xsd_type)


def policy(
    id: int = 1,
    name: str | None = None,
    priority: int = 0,
    *,
    parameters: Iterable[ParameterRule] = (),
    objects: Iterable[ObjectRule] = (),
    attributes: Iterable[AttributeRule] = (),
    refresh: Iterable[RefreshRule] = (),
) -> Policy:
    return Policy(
        id,
        name or f"p{id}",
        priority,
        tuple(parameters),
        tuple(objects),
        tuple(attributes),
        tuple(refresh),
    )


def sets(outcome: dict[str, Any]) -> dict[str, str]:
    return {p: s["value"] for p, s in outcome["set"].items()}


def spv_values(req: m.SetParameterValues) -> dict[str, str]:
    return {v.name: v.value for v in req.parameter_list}


def reasons(outcome: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["reason"] for f in outcome["faults"]}


MS = "Device.ManagementServer."


def basic_device() -> FakeCPE:
    return FakeCPE(
        tree(
            {
                MS + "PeriodicInformEnable": leaf("1", "xsd:boolean"),
                MS + "PeriodicInformInterval": leaf("0300", "xsd:unsignedInt"),
                MS + "PeriodicInformTime": leaf("1970-01-01T00:10:00Z", "xsd:dateTime"),
                MS + "URL": leaf("http://acs.example/"),
                MS + "ConnectionRequestURL": leaf("http://10.0.0.1:7547/", writable=False),
                MS + "ConnectionRequestUsername": leaf("admin"),
                MS + "ConnectionRequestPassword": leaf(""),
                "Device.DeviceInfo.SoftwareVersion": leaf("1.2.3", writable=False),
                "Device.DeviceInfo.UpTime": leaf("100", "xsd:unsignedInt", writable=False),
                "Device.WiFi.SSID.1.SSID": leaf("default"),
                "Device.WiFi.SSID.1.Enable": leaf("false", "xsd:boolean"),
            }
        )
    )


# --------------------------------------------------------------------------- same_value


@pytest.mark.parametrize(
    ("stored", "wanted", "xsd_type"),
    [
        ("x", "x", None),
        ("x", "x", "xsd:string"),
        ("1", "true", "xsd:boolean"),
        ("true", "1", "xsd:boolean"),
        ("TRUE", "true", "xsd:boolean"),
        ("0", "false", "xsd:boolean"),
        ("False", "0", "xsd:boolean"),
        ("0300", "300", "xsd:unsignedInt"),
        ("300", "0300", "xsd:int"),
        ("-5", "-05", "xsd:int"),
        ("10", "10", "xsd:long"),
        ("007", "7", "xsd:unsignedLong"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00", "xsd:dateTime"),
        ("2024-01-01T02:00:00+02:00", "2024-01-01T00:00:00Z", "xsd:dateTime"),
        ("1970-01-01T00:12:34Z", "1970-01-01T00:12:34.000Z", "xsd:dateTime"),
    ],
)
def test_same_value_equal(stored: str, wanted: str, xsd_type: str | None) -> None:
    assert same_value(stored, wanted, xsd_type)


@pytest.mark.parametrize(
    ("stored", "wanted", "xsd_type"),
    [
        (None, "x", None),
        (None, "", "xsd:string"),
        ("", "x", None),
        ("1", "true", None),  # without a type, text is text
        ("1", "true", "xsd:string"),
        ("0300", "300", "xsd:string"),
        ("1", "false", "xsd:boolean"),
        ("yes", "true", "xsd:boolean"),
        ("300", "301", "xsd:unsignedInt"),
        ("abc", "300", "xsd:unsignedInt"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", "xsd:dateTime"),
        ("garbage", "2024-01-01T00:00:00Z", "xsd:dateTime"),
    ],
)
def test_same_value_different(stored: str | None, wanted: str, xsd_type: str | None) -> None:
    assert not same_value(stored, wanted, xsd_type)


# --------------------------------------------------------------------------- State


def test_state_from_tree_splits_leaves_and_objects() -> None:
    t = tree({"Device.A.B": leaf("v", "xsd:int", writable=False, notification=2, value_at=NOW)})
    state = State.from_tree(t)
    assert state.values == {"Device.A.B": "v"}
    assert state.types == {"Device.A.B": "xsd:int"}
    assert state.writable == {"Device.A.B": False}
    assert state.value_at == {"Device.A.B": NOW}
    assert state.objects == {"Device.", "Device.A."}
    assert state.notification == {"Device.": 0, "Device.A.": 0, "Device.A.B": 2}
    assert state.excluded == set()


def test_state_instances() -> None:
    t = tree(
        {
            "Device.X.1.A": leaf("a"),
            "Device.X.3.A": leaf("a"),
            "Device.X.10.Sub.1.B": leaf("b"),
            "Device.XY.2.A": leaf("a"),
        },
        extra_objects=["Device.X.Other."],
    )
    state = State.from_tree(t)
    assert state.instances("Device.X.") == [1, 3, 10]
    assert state.instances("Device.X.10.Sub.") == [1]
    assert state.instances("Device.Nope.") == []


def test_state_learn_adds_values_and_parent_objects() -> None:
    state = State.from_tree(tree({"Device.A.x": leaf("1")}))
    state.learn(
        {
            "Device.T.4.Name": m.ParameterValueStruct("Device.T.4.Name", "n", "xsd:string"),
            "Device.A.x": m.ParameterValueStruct("Device.A.x", "2", "xsd:int"),
        }
    )
    assert state.values["Device.T.4.Name"] == "n"
    assert state.values["Device.A.x"] == "2"
    assert state.types["Device.A.x"] == "xsd:int"
    assert state.writable["Device.T.4.Name"] is None
    assert state.writable["Device.A.x"] is True  # known writability is kept
    assert {"Device.T.", "Device.T.4."} <= state.objects


def test_state_forget_removes_a_subtree() -> None:
    state = State.from_tree(
        tree({"Device.T.1.A": leaf("a"), "Device.T.1.B": leaf("b"), "Device.T.2.A": leaf("c")})
    )
    state.forget("Device.T.1.")
    assert set(state.values) == {"Device.T.2.A"}
    assert "Device.T.1." not in state.objects
    assert "Device.T.1." not in state.notification
    assert "Device.T.2." in state.objects
    assert state.instances("Device.T.") == [2]


# --------------------------------------------------------------------------- ranked


def test_ranked_highest_priority_first_then_lowest_id() -> None:
    a = policy(5, priority=1)
    b = policy(2, priority=10)
    c = policy(9, priority=10)
    d = policy(1, priority=1)
    e = policy(3, priority=-4)
    assert [p.id for p in ranked([a, b, c, d, e])] == [2, 9, 1, 5, 3]
    assert [p.id for p in ranked([e, d, c, b, a])] == [2, 9, 1, 5, 3]
    assert ranked([]) == []


# --------------------------------------------------------------------------- Outcome


def test_outcome_as_dict_shape() -> None:
    p1, p2 = policy(1, "wifi", 5), policy(2, "base")
    out = Outcome()
    out.set["Device.A"] = (1, "x")
    out.fault(p2, "Device.B", "nope")
    out.fault(p2, "Device.B", "nope")  # the same fault once
    out.conflicts.append(Conflict("Device.A", 1, "wifi", 2, "base", "y", "x"))
    out.added.append("Device.T.2.")
    out.deleted.append("Device.T.9.")
    out.attributes["Device.C"] = (1, 2)
    out.rounds = 2
    out.rpcs = 4
    assert out.faults == [PolicyFault(2, "base", "Device.B", "nope")]
    assert out.as_dict() == {
        "set": {"Device.A": {"policy": 1, "value": "x"}},
        "faults": [{"policy": 2, "name": "base", "path": "Device.B", "reason": "nope"}],
        "conflicts": [
            {
                "path": "Device.A",
                "winner": 1,
                "loser": 2,
                "wanted": "y",
                "chosen": "x",
                "reason": "policy 'wifi' outranks 'base'",
            }
        ],
        "added": ["Device.T.2."],
        "deleted": ["Device.T.9."],
        "attributes": {"Device.C": {"policy": 1, "notification": 2}},
        "rounds": 2,
        "rpcs": 4,
    }
    assert p1.name == "wifi"


def test_empty_outcome_as_dict() -> None:
    assert Outcome().as_dict() == {
        "set": {},
        "faults": [],
        "conflicts": [],
        "added": [],
        "deleted": [],
        "attributes": {},
        "rounds": 0,
        "rpcs": 0,
    }


# --------------------------------------------------------------------------- stale


def test_stale_reads_refresh_rules_past_their_age() -> None:
    state = State.from_tree(
        tree(
            {
                "Device.DeviceInfo.UpTime": leaf("1", value_at=NOW - timedelta(hours=2)),
                "Device.DeviceInfo.ModelName": leaf("m", value_at=NOW - timedelta(seconds=30)),
                "Device.DeviceInfo.Never": leaf("n", value_at=None),
                "Device.Other.X": leaf("o", value_at=NOW - timedelta(days=9)),
            }
        )
    )
    p = policy(refresh=[RefreshRule("DeviceInfo.", 3600)])
    assert stale([p], state, "Device.", NOW) == [
        "Device.DeviceInfo.UpTime",
        "Device.DeviceInfo.Never",
    ]
    # younger than the age asked: nothing; exactly the age: not yet stale
    assert stale([policy(refresh=[RefreshRule("DeviceInfo.", 86400)])], state, "Device.", NOW) == [
        "Device.DeviceInfo.Never"
    ]
    assert stale([policy(refresh=[RefreshRule("DeviceInfo.", 7200)])], state, "Device.", NOW) == [
        "Device.DeviceInfo.Never"
    ]


def test_stale_refresh_of_one_parameter() -> None:
    state = State.from_tree(
        tree(
            {
                "Device.A.X": leaf("1", value_at=NOW - timedelta(minutes=5)),
                "Device.A.XY": leaf("1", value_at=NOW - timedelta(minutes=5)),
            }
        )
    )
    assert stale([policy(refresh=[RefreshRule("A.X", 60)])], state, "Device.", NOW) == [
        "Device.A.X"
    ]
    assert stale([policy(refresh=[RefreshRule("Device.A.X", 60)])], state, "Device.", NOW) == [
        "Device.A.X"
    ]
    # a prefix without the dot is a parameter name, not an object
    assert stale([policy(refresh=[RefreshRule("A", 60)])], state, "Device.", NOW) == []


def test_stale_reads_parameters_set_but_never_read() -> None:
    state = State.from_tree(tree({"Device.A.X": leaf(None), "Device.A.Y": leaf("v")}))
    p = policy(
        parameters=[param("A.X", "1"), param("A.Y", "2"), param("A.Missing", "3")],
    )
    assert stale([p], state, "Device.", NOW) == ["Device.A.X"]


def test_stale_lists_a_path_once_in_order() -> None:
    state = State.from_tree(
        tree(
            {
                "Device.A.X": leaf(None, value_at=None),
                "Device.A.Y": leaf("y", value_at=NOW - timedelta(hours=1)),
            }
        )
    )
    p1 = policy(1, refresh=[RefreshRule("A.", 60)], parameters=[param("A.X", "1")])
    p2 = policy(2, refresh=[RefreshRule("A.Y", 60)], parameters=[param("Device.A.X", "2")])
    assert stale([p1, p2], state, "Device.", NOW) == ["Device.A.X", "Device.A.Y"]


def test_stale_under_the_other_root() -> None:
    state = State.from_tree(
        tree({"InternetGatewayDevice.DeviceInfo.UpTime": leaf("1", value_at=None)})
    )
    p = policy(refresh=[RefreshRule("DeviceInfo.UpTime", 60)])
    assert stale([p], state, "InternetGatewayDevice.", NOW) == [
        "InternetGatewayDevice.DeviceInfo.UpTime"
    ]
    assert stale([p], state, "Device.", NOW) == []


# --------------------------------------------------------------------------- desired


def _desired(policies: list[Policy], state: State, fields: dict[str, str | None] | None = None):
    out = Outcome()
    ctx = context_for(state, DEVICE, "Device.", FIELDS if fields is None else fields, KEY)
    return desired(policies, state, ctx, out), out


def test_desired_renders_values_under_the_root() -> None:
    state = basic_device().state()
    p = policy(
        parameters=[
            param("WiFi.SSID.1.SSID", "ssid-{DeviceID.SerialNumber[-4:]}"),
            param("Device.ManagementServer.URL", "http://acs/{DeviceID.OUI}", "xsd:string"),
        ]
    )
    want, out = _desired([p], state)
    assert {k: (v, t, pol.id) for k, (v, t, pol) in want.params.items()} == {
        "Device.WiFi.SSID.1.SSID": ("ssid-ABCD", None, 1),
        "Device.ManagementServer.URL": ("http://acs/A0B1C2", "xsd:string", 1),
    }
    assert out.faults == [] and out.conflicts == []


def test_desired_faults_missing_unwritable_and_bad_templates() -> None:
    state = basic_device().state()
    p = policy(
        7,
        "ops",
        parameters=[
            param("ManagementServer.Nope", "1"),
            param("ManagementServer.ConnectionRequestURL", "x"),
            param("ManagementServer.URL", "{DeviceID.ProductClass}"),
            param("ManagementServer.ConnectionRequestUsername", "{Device.No.Such}"),
            param("WiFi.SSID.1.SSID", "ok"),
        ],
    )
    fields = {k: v for k, v in FIELDS.items() if k != "DeviceID.ProductClass"}
    want, out = _desired([p], state, fields)
    assert list(want.params) == ["Device.WiFi.SSID.1.SSID"]
    got = {f.path: f.reason for f in out.faults}
    assert got[MS + "Nope"] == f"the device has no parameter {MS}Nope"
    assert (
        got[MS + "ConnectionRequestURL"]
        == f"{MS}ConnectionRequestURL is not writable on this device"
    )
    assert got[MS + "URL"].startswith("template '{DeviceID.ProductClass}': ")
    assert "DeviceID.ProductClass" in got[MS + "URL"]
    assert "Device.No.Such" in got[MS + "ConnectionRequestUsername"]
    assert all(f.policy_id == 7 and f.policy == "ops" for f in out.faults)


def test_desired_unknown_writability_is_tried() -> None:
    state = State.from_tree(tree({"Device.A.X": leaf("a", writable=None)}))
    want, out = _desired([policy(parameters=[param("A.X", "b")])], state)
    assert "Device.A.X" in want.params and out.faults == []


def test_desired_skips_excluded_parameters() -> None:
    state = basic_device().state()
    state.excluded.add("Device.WiFi.SSID.1.SSID")
    want, out = _desired([policy(parameters=[param("WiFi.SSID.1.SSID", "x")])], state)
    assert want.params == {} and out.faults == []


def test_desired_higher_priority_wins_and_loser_is_reported() -> None:
    state = basic_device().state()
    low = policy(1, "base", 0, parameters=[param("WiFi.SSID.1.SSID", "base-net")])
    high = policy(2, "vip", 10, parameters=[param("WiFi.SSID.1.SSID", "vip-net")])
    want, out = _desired([low, high], state)
    assert want.params["Device.WiFi.SSID.1.SSID"][0] == "vip-net"
    assert want.params["Device.WiFi.SSID.1.SSID"][2].id == 2
    assert out.conflicts == [
        Conflict("Device.WiFi.SSID.1.SSID", 2, "vip", 1, "base", "base-net", "vip-net")
    ]


def test_desired_equal_values_are_no_conflict() -> None:
    state = basic_device().state()
    a = policy(1, priority=5, parameters=[param(MS + "PeriodicInformInterval", "300", "xsd:int")])
    b = policy(2, priority=1, parameters=[param(MS + "PeriodicInformInterval", "0300", "xsd:int")])
    c = policy(3, priority=0, parameters=[param(MS + "PeriodicInformInterval", "300", "xsd:int")])
    want, out = _desired([a, b, c], state)
    assert want.params[MS + "PeriodicInformInterval"][2].id == 1
    assert out.conflicts == []


def test_desired_a_policy_does_not_conflict_with_itself() -> None:
    state = basic_device().state()
    p = policy(parameters=[param("WiFi.SSID.1.SSID", "one"), param("WiFi.SSID.1.SSID", "two")])
    want, out = _desired([p], state)
    assert want.params["Device.WiFi.SSID.1.SSID"][0] == "one"
    assert out.conflicts == []


def test_desired_equal_priority_lower_id_wins() -> None:
    state = basic_device().state()
    newer = policy(7, "newer", 3, parameters=[param("WiFi.SSID.1.SSID", "newer")])
    older = policy(3, "older", 3, parameters=[param("WiFi.SSID.1.SSID", "older")])
    for order in ([newer, older], [older, newer]):
        want, out = _desired(order, state)
        assert want.params["Device.WiFi.SSID.1.SSID"][0] == "older"
        assert out.conflicts == [
            Conflict("Device.WiFi.SSID.1.SSID", 3, "older", 7, "newer", "newer", "older")
        ]


def test_desired_a_losing_policy_still_sets_what_nobody_else_claims() -> None:
    state = basic_device().state()
    high = policy(1, priority=9, parameters=[param("WiFi.SSID.1.SSID", "a")])
    low = policy(
        2,
        priority=0,
        parameters=[param("WiFi.SSID.1.SSID", "b"), param("WiFi.SSID.1.Enable", "true")],
    )
    want, _ = _desired([low, high], state)
    assert want.params["Device.WiFi.SSID.1.Enable"][2].id == 2


def test_desired_count_and_object_faults() -> None:
    state = State.from_tree(
        tree(
            {f"Device.T.{n}.A": leaf("a") for n in (1, 2, 5)},
            extra_objects=["Device.Empty."],
        )
    )
    fewer = policy(1, objects=[ObjectRule("T.", count=1)])
    want, out = _desired([fewer], state)
    assert [(i, p.id) for i, p in want.deletes] == [("Device.T.5.", 1), ("Device.T.2.", 1)]
    assert want.adds == []
    more = policy(1, objects=[ObjectRule("Empty.", count=2), ObjectRule("Nope.", count=1)])
    want, out = _desired([more], state)
    assert [t for t, _, _ in want.adds] == ["Device.Empty.", "Device.Empty."]
    assert [(f.path, f.reason) for f in out.faults] == [
        ("Device.Nope.", "the device has no object Device.Nope.")
    ]


def test_desired_the_higher_policy_decides_the_count() -> None:
    state = State.from_tree(tree({f"Device.T.{n}.A": leaf("a") for n in (1, 2)}))
    high = policy(1, priority=5, objects=[ObjectRule("T.", count=3)])
    low = policy(2, priority=1, objects=[ObjectRule("T.", count=0)])
    want, _ = _desired([low, high], state)
    assert len(want.adds) == 1 and want.deletes == []


def test_desired_attributes_first_policy_wins_and_unknown_paths_fault() -> None:
    state = basic_device().state()
    high = policy(1, priority=5, attributes=[AttributeRule("ManagementServer.URL", 2)])
    low = policy(
        2,
        attributes=[AttributeRule("ManagementServer.URL", 1), AttributeRule("Nope.X", 1)],
    )
    want, out = _desired([low, high], state)
    assert {p: (n, pol.id) for p, (n, pol) in want.attributes.items()} == {MS + "URL": (2, 1)}
    assert [(f.policy_id, f.path) for f in out.faults] == [(2, "Device.Nope.X")]


def test_desired_attributes_on_an_object() -> None:
    state = basic_device().state()
    want, out = _desired([policy(attributes=[AttributeRule("WiFi.SSID.1.", 1)])], state)
    assert want.attributes["Device.WiFi.SSID.1."][0] == 1 and out.faults == []


# --------------------------------------------------------------------------- provision: values


def test_one_set_parameter_values_for_many_values() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("ManagementServer.PeriodicInformEnable", "false"),
            param("ManagementServer.PeriodicInformInterval", "600"),
            param("ManagementServer.URL", "https://acs.example/cwmp"),
            param("WiFi.SSID.1.SSID", "ssid-{DeviceID.SerialNumber[-4:]}"),
            param("ManagementServer.ConnectionRequestPassword", "{secret:cr}"),
        ]
    )
    outcome = run([p], cpe)
    assert cpe.kinds() == ["SetParameterValues"]
    (spv,) = cpe.of(m.SetParameterValues)
    assert spv.parameter_key == ""
    secret = cpe.value(MS + "ConnectionRequestPassword")
    assert secret is not None and len(secret) == 20
    assert {v.name: (v.value, v.xsd_type) for v in spv.parameter_list} == {
        MS + "PeriodicInformEnable": ("false", "xsd:boolean"),
        MS + "PeriodicInformInterval": ("600", "xsd:unsignedInt"),
        MS + "URL": ("https://acs.example/cwmp", "xsd:string"),
        "Device.WiFi.SSID.1.SSID": ("ssid-ABCD", "xsd:string"),
        MS + "ConnectionRequestPassword": (secret, "xsd:string"),
    }
    assert cpe.value("Device.WiFi.SSID.1.SSID") == "ssid-ABCD"
    assert outcome["set"]["Device.WiFi.SSID.1.SSID"] == {"policy": 1, "value": "ssid-ABCD"}
    assert len(outcome["set"]) == 5
    assert outcome["faults"] == [] and outcome["conflicts"] == []
    assert outcome["rpcs"] == 1
    assert outcome["rounds"] == 2  # the second round finds nothing left


def test_the_rule_type_is_sent_when_given() -> None:
    cpe = basic_device()
    run([policy(parameters=[param("WiFi.SSID.1.SSID", "42", "xsd:unsignedInt")])], cpe)
    (spv,) = cpe.of(m.SetParameterValues)
    assert spv.parameter_list == [
        m.ParameterValueStruct("Device.WiFi.SSID.1.SSID", "42", "xsd:unsignedInt")
    ]


def test_an_unknown_type_is_sent_as_string() -> None:
    cpe = FakeCPE(tree({"Device.A.X": leaf("a", None)}))
    run([policy(parameters=[param("A.X", "b")])], cpe)
    assert cpe.of(m.SetParameterValues)[0].parameter_list == [
        m.ParameterValueStruct("Device.A.X", "b", "xsd:string")
    ]


def test_nothing_is_sent_when_in_sync() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("ManagementServer.PeriodicInformEnable", "true"),  # stored "1"
            param("ManagementServer.PeriodicInformInterval", "300"),  # stored "0300"
            param("ManagementServer.PeriodicInformTime", "1970-01-01T00:10:00+00:00"),
            param("ManagementServer.URL", "http://acs.example/"),
            param("ManagementServer.ConnectionRequestUsername", "admin"),
        ]
    )
    outcome = run([p], cpe)
    assert cpe.requests == []
    assert outcome == Outcome(rounds=1).as_dict()


def test_a_second_session_after_setting_sends_nothing() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("WiFi.SSID.1.SSID", "net-{DeviceID.SerialNumber[:3]}"),
            param("ManagementServer.PeriodicInformTime", "{spread_time:3600}"),
            param("ManagementServer.ConnectionRequestPassword", "{secret:cr}"),
        ]
    )
    run([p], cpe)
    assert len(cpe.of(m.SetParameterValues)) == 1
    cpe.requests.clear()
    outcome = run([p], cpe)  # a fresh state read from the CPE
    assert cpe.requests == [] and outcome["set"] == {}


def test_paths_relative_to_an_igd_root() -> None:
    cpe = FakeCPE(
        tree(
            {
                "InternetGatewayDevice.ManagementServer.PeriodicInformInterval": leaf(
                    "60", "xsd:unsignedInt"
                )
            }
        )
    )
    p = policy(parameters=[param("ManagementServer.PeriodicInformInterval", "3600")])
    outcome = run([p], cpe, root="InternetGatewayDevice.")
    assert sets(outcome) == {
        "InternetGatewayDevice.ManagementServer.PeriodicInformInterval": "3600"
    }


def test_priority_conflict_higher_wins() -> None:
    cpe = basic_device()
    low = policy(1, "base", 0, parameters=[param("WiFi.SSID.1.SSID", "base-net")])
    high = policy(2, "vip", 10, parameters=[param("WiFi.SSID.1.SSID", "vip-net")])
    outcome = run([low, high], cpe)
    assert cpe.value("Device.WiFi.SSID.1.SSID") == "vip-net"
    assert outcome["set"] == {"Device.WiFi.SSID.1.SSID": {"policy": 2, "value": "vip-net"}}
    assert outcome["conflicts"] == [
        {
            "path": "Device.WiFi.SSID.1.SSID",
            "winner": 2,
            "loser": 1,
            "wanted": "base-net",
            "chosen": "vip-net",
            "reason": "policy 'vip' outranks 'base'",
        }
    ]
    assert len(cpe.of(m.SetParameterValues)) == 1


def test_priority_equal_values_no_conflict() -> None:
    cpe = basic_device()
    a = policy(1, priority=1, parameters=[param("WiFi.SSID.1.SSID", "same")])
    b = policy(2, priority=2, parameters=[param("WiFi.SSID.1.SSID", "same")])
    outcome = run([a, b], cpe)
    assert outcome["conflicts"] == []
    assert outcome["set"] == {"Device.WiFi.SSID.1.SSID": {"policy": 2, "value": "same"}}


def test_priority_equal_lower_id_wins() -> None:
    cpe = basic_device()
    newer = policy(8, "newer", parameters=[param("WiFi.SSID.1.SSID", "newer")])
    older = policy(4, "older", parameters=[param("WiFi.SSID.1.SSID", "older")])
    outcome = run([newer, older], cpe)
    assert cpe.value("Device.WiFi.SSID.1.SSID") == "older"
    assert [(c["winner"], c["loser"]) for c in outcome["conflicts"]] == [(4, 8)]


def test_equivalent_values_by_stored_type_are_no_conflict() -> None:
    cpe = basic_device()
    a = policy(1, parameters=[param("WiFi.SSID.1.Enable", "1")])
    b = policy(2, parameters=[param("WiFi.SSID.1.Enable", "true")])
    outcome = run([a, b], cpe)
    assert outcome["conflicts"] == []


def test_a_missing_parameter_is_a_fault_and_the_rest_applies() -> None:
    cpe = basic_device()
    p = policy(
        3,
        "wifi",
        parameters=[param("WiFi.SSID.9.SSID", "x"), param("WiFi.SSID.1.SSID", "ok")],
    )
    outcome = run([p], cpe)
    assert outcome["faults"] == [
        {
            "policy": 3,
            "name": "wifi",
            "path": "Device.WiFi.SSID.9.SSID",
            "reason": "the device has no parameter Device.WiFi.SSID.9.SSID",
        }
    ]
    assert sets(outcome) == {"Device.WiFi.SSID.1.SSID": "ok"}
    assert spv_values(cpe.of(m.SetParameterValues)[0]) == {"Device.WiFi.SSID.1.SSID": "ok"}


def test_a_non_writable_parameter_is_a_fault() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("DeviceInfo.SoftwareVersion", "9.9"),
            param("ManagementServer.URL", "http://new/"),
        ]
    )
    outcome = run([p], cpe)
    assert reasons(outcome) == {
        "Device.DeviceInfo.SoftwareVersion": "Device.DeviceInfo.SoftwareVersion is not "
        "writable on this device"
    }
    assert sets(outcome) == {MS + "URL": "http://new/"}
    assert cpe.value("Device.DeviceInfo.SoftwareVersion") == "1.2.3"


def test_a_template_error_is_a_fault() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("ManagementServer.URL", "http://acs/{ProvisioningCode}"),
            param("WiFi.SSID.1.SSID", "{DeviceID.SerialNumber[40]}"),
            param("ManagementServer.ConnectionRequestUsername", "{X.Unknown}"),
            param("WiFi.SSID.1.Enable", "true"),
        ]
    )
    outcome = run([p], cpe, fields={**FIELDS, "ProvisioningCode": None})
    got = reasons(outcome)
    assert set(got) == {MS + "URL", "Device.WiFi.SSID.1.SSID", MS + "ConnectionRequestUsername"}
    assert got[MS + "URL"].startswith("template 'http://acs/{ProvisioningCode}': ")
    assert "ProvisioningCode" in got[MS + "URL"]
    assert "index 40" in got["Device.WiFi.SSID.1.SSID"]
    assert "Device.X.Unknown" in got[MS + "ConnectionRequestUsername"]
    assert sets(outcome) == {"Device.WiFi.SSID.1.Enable": "true"}
    assert cpe.value(MS + "URL") == "http://acs.example/"


def test_a_template_reads_a_value_the_same_session_sets() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[
            param("WiFi.SSID.1.SSID", "net-{DeviceID.SerialNumber[-4:]}"),
            param("ManagementServer.ConnectionRequestUsername", "{WiFi.SSID.1.SSID}"),
        ]
    )
    outcome = run([p], cpe)
    # round 1 renders the username from the old SSID, round 2 from the new one
    spvs = cpe.of(m.SetParameterValues)
    assert [spv_values(s) for s in spvs] == [
        {"Device.WiFi.SSID.1.SSID": "net-ABCD", MS + "ConnectionRequestUsername": "default"},
        {MS + "ConnectionRequestUsername": "net-ABCD"},
    ]
    assert outcome["faults"] == []
    assert cpe.value(MS + "ConnectionRequestUsername") == "net-ABCD"


# --------------------------------------------------------------------------- provision: reads


def test_a_stale_refresh_rule_reads_only_the_stale_paths() -> None:
    cpe = basic_device()
    cpe.tree["Device.DeviceInfo.UpTime"].value = "5000"
    state = cpe.state(
        {"Device.DeviceInfo.UpTime": "100"},
        {"Device.DeviceInfo.UpTime": NOW - timedelta(hours=2)},
    )
    p = policy(
        refresh=[RefreshRule("DeviceInfo.", 3600)],
        parameters=[param("ManagementServer.ConnectionRequestUsername", "up-{DeviceInfo.UpTime}")],
    )
    outcome = run([p], cpe, state)
    assert cpe.kinds() == ["GetParameterValues", "SetParameterValues"]
    assert cpe.requests[0].parameter_names == ["Device.DeviceInfo.UpTime"]
    assert spv_values(cpe.requests[1]) == {MS + "ConnectionRequestUsername": "up-5000"}
    assert state.values["Device.DeviceInfo.UpTime"] == "5000"
    assert outcome["rpcs"] == 2
    assert outcome["faults"] == []


def test_fresh_values_are_not_read() -> None:
    cpe = basic_device()
    p = policy(refresh=[RefreshRule("DeviceInfo.", 3600)])
    outcome = run([p], cpe)
    assert cpe.requests == [] and outcome["rpcs"] == 0


def test_reads_are_batched() -> None:
    cpe = FakeCPE(tree({f"Device.S.{i}": leaf(str(i), value_at=None) for i in range(5)}))
    outcome = run([policy(refresh=[RefreshRule("S.", 60)])], cpe, batch_size=2)
    assert [len(r.parameter_names) for r in cpe.of(m.GetParameterValues)] == [2, 2, 1]
    assert outcome["rpcs"] == 3


def test_an_unknown_value_of_a_set_parameter_is_read_first() -> None:
    cpe = basic_device()
    state = cpe.state({MS + "PeriodicInformInterval": None, MS + "URL": None})
    p = policy(
        parameters=[
            param("ManagementServer.PeriodicInformInterval", "300"),  # the CPE has 0300
            param("ManagementServer.URL", "https://new/"),
        ]
    )
    outcome = run([p], cpe, state)
    assert cpe.kinds() == ["GetParameterValues", "SetParameterValues"]
    assert cpe.requests[0].parameter_names == [MS + "PeriodicInformInterval", MS + "URL"]
    # the interval turned out right; only the URL is set
    assert spv_values(cpe.requests[1]) == {MS + "URL": "https://new/"}
    assert sets(outcome) == {MS + "URL": "https://new/"}


def test_an_unreadable_value_is_set_anyway() -> None:
    cpe = basic_device()
    state = cpe.state({MS + "URL": None})
    cpe.unreadable = {MS + "URL"}  # the CPE faults the read
    outcome = run([policy(parameters=[param("ManagementServer.URL", "https://new/")])], cpe, state)
    assert cpe.kinds() == ["GetParameterValues", "SetParameterValues"]
    assert sets(outcome) == {MS + "URL": "https://new/"}


# --------------------------------------------------------------------------- provision: objects


def port_mapping_device(*instances: tuple[int, str]) -> FakeCPE:
    pm = "Device.NAT.PortMapping."
    leaves: dict[str, Rec] = {"Device.NAT.Enable": leaf("true", "xsd:boolean")}
    for n, port in instances:
        leaves[f"{pm}{n}.ExternalPort"] = leaf(port, "xsd:unsignedInt")
        leaves[f"{pm}{n}.InternalClient"] = leaf("192.168.1.2")
        leaves[f"{pm}{n}.Enable"] = leaf("false", "xsd:boolean")
    return FakeCPE(
        tree(leaves, extra_objects=[pm]),
        templates={
            pm: {
                "ExternalPort": ("0", "xsd:unsignedInt"),
                "InternalClient": ("", "xsd:string"),
                "Enable": ("false", "xsd:boolean"),
            }
        },
    )


PM = "Device.NAT.PortMapping."


def test_object_count_adds_instances() -> None:
    cpe = port_mapping_device((1, "80"))
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=3)])], cpe)
    assert cpe.kinds() == [
        "AddObject",
        "GetParameterNames",
        "GetParameterValues",
        "AddObject",
        "GetParameterNames",
        "GetParameterValues",
    ]
    assert all(r.object_name == PM for r in cpe.of(m.AddObject))
    assert cpe.of(m.GetParameterNames)[0].parameter_path == PM + "2."
    assert cpe.of(m.GetParameterNames)[0].next_level is False
    assert outcome["added"] == [PM + "2.", PM + "3."]
    assert cpe.instances(PM) == [1, 2, 3]
    assert outcome["rpcs"] == 6
    assert outcome["rounds"] == 2


def test_object_count_adds_and_sets_parameters_on_new_instances() -> None:
    cpe = port_mapping_device()
    rule = ObjectRule("NAT.PortMapping.", count=1, parameters=(("Enable", parse_template("1")),))
    outcome = run([policy(objects=[rule])], cpe)
    assert outcome["added"] == [PM + "1."]
    assert spv_values(cpe.of(m.SetParameterValues)[0]) == {PM + "1.Enable": "1"}
    assert cpe.of(m.SetParameterValues)[0].parameter_list[0].xsd_type == "xsd:boolean"


def test_object_count_deletes_highest_instances_first() -> None:
    cpe = port_mapping_device((1, "80"), (2, "81"), (4, "82"), (7, "83"))
    state = cpe.state()
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=2)])], cpe, state)
    assert [r.object_name for r in cpe.requests] == [PM + "7.", PM + "4."]
    assert cpe.kinds() == ["DeleteObject", "DeleteObject"]
    assert outcome["deleted"] == [PM + "7.", PM + "4."]
    assert cpe.instances(PM) == [1, 2]
    assert state.instances(PM) == [1, 2]
    assert PM + "7.ExternalPort" not in state.values
    assert outcome["rpcs"] == 2


def test_object_count_zero_deletes_everything() -> None:
    cpe = port_mapping_device((1, "80"), (2, "81"))
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=0)])], cpe)
    assert outcome["deleted"] == [PM + "2.", PM + "1."]
    assert cpe.instances(PM) == []


def test_object_count_already_right_sends_nothing() -> None:
    cpe = port_mapping_device((1, "80"), (2, "81"))
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=2)])], cpe)
    assert cpe.requests == [] and outcome["added"] == [] and outcome["deleted"] == []


def test_a_missing_table_is_a_fault() -> None:
    cpe = basic_device()
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=1)])], cpe)
    assert reasons(outcome) == {PM: f"the device has no object {PM}"}
    assert cpe.requests == []


def test_refused_add_and_delete_are_faults() -> None:
    cpe = port_mapping_device((1, "80"))
    cpe.add_fault = 9004
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=2)])], cpe)
    assert reasons(outcome) == {PM: "AddObject refused: 9004 Resources exceeded"}
    assert cpe.kinds() == ["AddObject"]
    assert outcome["added"] == []

    cpe = port_mapping_device((1, "80"), (2, "81"))
    cpe.delete_fault = 9001
    outcome = run([policy(objects=[ObjectRule("NAT.PortMapping.", count=1)])], cpe)
    assert reasons(outcome) == {PM + "2.": "DeleteObject refused: 9001 Request denied"}
    assert outcome["deleted"] == []


def keyed_rule() -> ObjectRule:
    return ObjectRule(
        "NAT.PortMapping.",
        keys=(("ExternalPort", parse_template("8080")),),
        parameters=(
            ("InternalClient", parse_template("192.168.1.{DeviceID.SerialNumber[-2:]}")),
            ("Enable", parse_template("true")),
        ),
    )


def test_object_keys_adds_one_instance_and_sets_it_in_one_go() -> None:
    cpe = port_mapping_device((1, "80"))
    state = cpe.state()
    outcome = run([policy(objects=[keyed_rule()])], cpe, state)
    assert cpe.kinds() == [
        "AddObject",
        "GetParameterNames",
        "GetParameterValues",
        "SetParameterValues",
    ]
    (spv,) = cpe.of(m.SetParameterValues)
    assert {v.name: (v.value, v.xsd_type) for v in spv.parameter_list} == {
        PM + "2.ExternalPort": ("8080", "xsd:unsignedInt"),
        PM + "2.InternalClient": ("192.168.1.CD", "xsd:string"),
        PM + "2.Enable": ("true", "xsd:boolean"),
    }
    assert outcome["added"] == [PM + "2."]
    assert sets(outcome) == {
        PM + "2.ExternalPort": "8080",
        PM + "2.InternalClient": "192.168.1.CD",
        PM + "2.Enable": "true",
    }
    assert cpe.value(PM + "1.ExternalPort") == "80"  # the other instance is untouched
    assert outcome["faults"] == []
    assert outcome["rpcs"] == 4

    # a second run on the resulting state adds nothing
    cpe.requests.clear()
    again = run([policy(objects=[keyed_rule()])], cpe, state)
    assert cpe.requests == []
    assert again["added"] == [] and again["set"] == {}

    # nor does one on a state freshly read from the CPE
    again = run([policy(objects=[keyed_rule()])], cpe)
    assert cpe.requests == []


def test_object_keys_sets_parameters_on_the_matching_instance() -> None:
    cpe = port_mapping_device((1, "80"), (2, "8080"))
    outcome = run([policy(objects=[keyed_rule()])], cpe)
    assert cpe.kinds() == ["SetParameterValues"]
    assert sets(outcome) == {PM + "2.InternalClient": "192.168.1.CD", PM + "2.Enable": "true"}
    assert outcome["added"] == []


def test_object_keys_with_a_template_error_does_nothing() -> None:
    cpe = port_mapping_device((1, "80"))
    rule = ObjectRule("NAT.PortMapping.", keys=(("ExternalPort", parse_template("{X.Nope}")),))
    outcome = run([policy(objects=[rule])], cpe)
    assert cpe.requests == []
    assert list(reasons(outcome)) == [PM + "ExternalPort"]
    assert "Device.X.Nope" in reasons(outcome)[PM + "ExternalPort"]


def test_a_refused_key_does_not_add_an_instance_every_round() -> None:
    cpe = port_mapping_device((1, "80"))
    cpe.refuse = {
        PM + "2.ExternalPort": 9007,
        PM + "3.ExternalPort": 9007,
        PM + "4.ExternalPort": 9007,
    }
    run([policy(objects=[keyed_rule()])], cpe)
    assert len(cpe.of(m.AddObject)) == 1


# --------------------------------------------------------------------------- provision: attributes


def test_attributes_in_one_set_parameter_attributes() -> None:
    cpe = basic_device()
    state = cpe.state()
    p = policy(
        5,
        attributes=[
            AttributeRule("ManagementServer.ConnectionRequestURL", 2),
            AttributeRule("DeviceInfo.SoftwareVersion", 1),
            AttributeRule("ManagementServer.URL", 0),  # already 0
        ],
    )
    outcome = run([p], cpe, state)
    assert cpe.kinds() == ["SetParameterAttributes"]
    (spa,) = cpe.of(m.SetParameterAttributes)
    assert spa.parameter_list == [
        m.SetParameterAttributesStruct(MS + "ConnectionRequestURL", True, 2, False),
        m.SetParameterAttributesStruct("Device.DeviceInfo.SoftwareVersion", True, 1, False),
    ]
    assert outcome["attributes"] == {
        MS + "ConnectionRequestURL": {"policy": 5, "notification": 2},
        "Device.DeviceInfo.SoftwareVersion": {"policy": 5, "notification": 1},
    }
    assert cpe.tree[MS + "ConnectionRequestURL"].notification == 2
    assert outcome["rpcs"] == 1

    # not again when equal: neither on the session's state nor on a fresh one
    cpe.requests.clear()
    assert run([p], cpe, state)["attributes"] == {}
    assert run([p], cpe)["attributes"] == {}
    assert cpe.requests == []


def test_attributes_and_values_in_the_same_round() -> None:
    cpe = basic_device()
    p = policy(
        parameters=[param("ManagementServer.URL", "http://x/")],
        attributes=[AttributeRule("ManagementServer.URL", 2)],
    )
    outcome = run([p], cpe)
    assert cpe.kinds() == ["SetParameterValues", "SetParameterAttributes"]
    assert outcome["rounds"] == 2 and outcome["rpcs"] == 2


def test_a_refused_set_parameter_attributes_is_a_fault() -> None:
    cpe = basic_device()
    cpe.spa_fault = 9001
    p = policy(attributes=[AttributeRule("ManagementServer.URL", 2)])
    outcome = run([p], cpe)
    assert reasons(outcome) == {MS + "URL": "SetParameterAttributes refused: 9001 Request denied"}
    assert outcome["attributes"] == {}


def test_a_refused_set_parameter_attributes_is_not_retried() -> None:
    cpe = basic_device()
    cpe.spa_fault = 9001
    run([policy(attributes=[AttributeRule("ManagementServer.URL", 2)])], cpe)
    assert len(cpe.of(m.SetParameterAttributes)) == 1


# --------------------------------------------------------------------------- provision: faults


def test_a_cpe_fault_for_one_parameter_excludes_it_and_sets_the_rest() -> None:
    cpe = basic_device()
    cpe.refuse = {"Device.WiFi.SSID.1.SSID": 9007}
    state = cpe.state()
    p = policy(
        4,
        "wifi",
        parameters=[
            param("WiFi.SSID.1.SSID", "bad ssid"),
            param("WiFi.SSID.1.Enable", "true"),
            param("ManagementServer.URL", "http://new/"),
        ],
    )
    outcome = run([p], cpe, state)
    first, second = cpe.of(m.SetParameterValues)
    assert set(spv_values(first)) == {
        "Device.WiFi.SSID.1.SSID",
        "Device.WiFi.SSID.1.Enable",
        MS + "URL",
    }
    assert spv_values(second) == {"Device.WiFi.SSID.1.Enable": "true", MS + "URL": "http://new/"}
    assert outcome["faults"] == [
        {
            "policy": 4,
            "name": "wifi",
            "path": "Device.WiFi.SSID.1.SSID",
            "reason": "the CPE refused the value: 9007 Invalid parameter value",
        }
    ]
    assert sets(outcome) == {"Device.WiFi.SSID.1.Enable": "true", MS + "URL": "http://new/"}
    assert cpe.value("Device.WiFi.SSID.1.SSID") == "default"
    assert state.excluded == {"Device.WiFi.SSID.1.SSID"}
    assert outcome["rpcs"] == 2
    assert outcome["rounds"] == 3


def test_a_generic_set_parameter_values_fault_stops_with_faults_for_all() -> None:
    cpe = basic_device()
    cpe.spv_fault = 9002
    p = policy(
        parameters=[param("WiFi.SSID.1.SSID", "a"), param("ManagementServer.URL", "http://b/")],
        attributes=[AttributeRule("ManagementServer.URL", 2)],
    )
    outcome = run([p], cpe)
    assert cpe.kinds() == ["SetParameterValues"]
    assert reasons(outcome) == {
        "Device.WiFi.SSID.1.SSID": "SetParameterValues refused: 9002 Internal error",
        MS + "URL": "SetParameterValues refused: 9002 Internal error",
    }
    assert outcome["set"] == {}
    assert outcome["rounds"] == 1 and outcome["rpcs"] == 1


def test_a_looping_policy_stops_after_max_rounds() -> None:
    cpe = basic_device()
    p = policy(9, "echo", parameters=[param("WiFi.SSID.1.SSID", "{WiFi.SSID.1.SSID}x")])
    outcome = run([p], cpe)
    spvs = cpe.of(m.SetParameterValues)
    assert len(spvs) == MAX_ROUNDS == 3
    assert [spv_values(s)["Device.WiFi.SSID.1.SSID"] for s in spvs] == [
        "defaultx",
        "defaultxx",
        "defaultxxx",
    ]
    assert outcome["rounds"] == MAX_ROUNDS
    assert outcome["faults"] == [
        {
            "policy": 9,
            "name": "echo",
            "path": "Device.WiFi.SSID.1.SSID",
            "reason": "policy 'echo' does not converge: after 3 rounds it still wants "
            "Device.WiFi.SSID.1.SSID = 'defaultxxxx'",
        }
    ]


def test_max_rounds_is_a_parameter() -> None:
    cpe = basic_device()
    p = policy(9, "echo", parameters=[param("WiFi.SSID.1.SSID", "{WiFi.SSID.1.SSID}x")])
    outcome = run([p], cpe, max_rounds=5)
    assert len(cpe.of(m.SetParameterValues)) == 5
    assert "after 5 rounds" in outcome["faults"][0]["reason"]


def test_two_policies_feeding_each_other_are_faulted_but_settled_ones_are_not() -> None:
    cpe = basic_device()
    loop = policy(
        1,
        "loop",
        parameters=[
            param("ManagementServer.ConnectionRequestUsername", "{WiFi.SSID.1.SSID}-u"),
            param("WiFi.SSID.1.SSID", "{ManagementServer.ConnectionRequestUsername}-s"),
        ],
    )
    steady = policy(2, "steady", parameters=[param("ManagementServer.URL", "http://fixed/")])
    outcome = run([loop, steady], cpe)
    assert len(cpe.of(m.SetParameterValues)) == MAX_ROUNDS
    assert {f["name"] for f in outcome["faults"]} == {"loop"}
    assert all("does not converge" in f["reason"] for f in outcome["faults"])
    assert sets(outcome)[MS + "URL"] == "http://fixed/"


def test_three_rounds_that_converge_are_not_faulted() -> None:
    # SSID <- username <- serial: settles in the third round
    cpe = basic_device()
    p = policy(
        parameters=[
            param("WiFi.SSID.1.SSID", "{ManagementServer.ConnectionRequestUsername}"),
            param("ManagementServer.ConnectionRequestUsername", "{ManagementServer.URL}"),
            param("ManagementServer.URL", "{DeviceID.SerialNumber}"),
        ]
    )
    outcome = run([p], cpe)
    assert len(cpe.of(m.SetParameterValues)) == 3
    assert cpe.value("Device.WiFi.SSID.1.SSID") == "SN0001ABCD"
    assert outcome["faults"] == []


def test_the_plan_yields_only_requests_the_acs_sends() -> None:
    cpe = port_mapping_device((1, "80"), (2, "81"))
    state = cpe.state({PM + "1.ExternalPort": None})
    run(
        [
            policy(
                objects=[keyed_rule()],
                attributes=[AttributeRule("NAT.Enable", 1)],
                parameters=[param(PM + "1.ExternalPort", "81")],
            )
        ],
        cpe,
        state,
    )
    assert cpe.requests
    assert all(r.direction == "acs-to-cpe" and not r.is_response for r in cpe.requests)


# --------------------------------------------------------------------------- value types


def test_a_rendered_value_of_the_wrong_type_is_a_fault_and_never_sent() -> None:
    ms = "Device.ManagementServer."
    cpe = FakeCPE(
        tree(
            {
                ms + "PeriodicInformInterval": leaf("3600", "xsd:unsignedInt"),
                ms + "PeriodicInformEnable": leaf("false", "xsd:boolean"),
                "Device.WiFi.SSID.1.SSID": leaf("old"),
            }
        ),
        templates={"Device.NAT.PortMapping.": {"ExternalPort": ("0", "xsd:unsignedInt")}},
    )
    cpe.tree["Device.NAT.PortMapping."] = obj()
    odd = policy(
        1,
        "odd",
        parameters=[
            # a serial number is no xsd:unsignedInt: known only once rendered
            param("ManagementServer.PeriodicInformInterval", "{DeviceID.SerialNumber}"),
            param("WiFi.SSID.1.SSID", "{DeviceID.SerialNumber}" * 4),  # over 32 characters
        ],
        objects=[
            ObjectRule(
                "NAT.PortMapping.",
                keys=(("ExternalPort", parse_template("{DeviceID.SerialNumber}")),),
            )
        ],
    )
    good = policy(2, "good", parameters=[param("ManagementServer.PeriodicInformEnable", "true")])
    out = run([odd, good], cpe)
    sent = [v.name for spv in cpe.of(m.SetParameterValues) for v in spv.parameter_list]
    assert sent == [ms + "PeriodicInformEnable"]
    assert cpe.value(ms + "PeriodicInformInterval") == "3600"
    assert cpe.value(ms + "PeriodicInformEnable") == "true"
    faults = {f["path"]: f["reason"] for f in out["faults"] if f["policy"] == 1}
    assert "must be an xsd:unsignedInt" in faults[ms + "PeriodicInformInterval"]
    assert "at most 32 characters" in faults["Device.WiFi.SSID.1.SSID"]
    # a key no instance can hold adds no instance (it would add one every round)
    assert "must be an xsd:unsignedInt" in faults["Device.NAT.PortMapping.{i}.ExternalPort"]
    assert cpe.of(m.AddObject) == []
    assert all(f["policy"] == 1 for f in out["faults"])


def test_values_are_sent_by_the_models_type_when_the_tree_has_none() -> None:
    ms = "Device.ManagementServer."
    cpe = FakeCPE(tree({ms + "PeriodicInformInterval": leaf("3600", None)}))
    run([policy(parameters=[param("ManagementServer.PeriodicInformInterval", "600")])], cpe)
    [spv] = cpe.of(m.SetParameterValues)
    assert spv.parameter_list[0].xsd_type == "xsd:unsignedInt"
