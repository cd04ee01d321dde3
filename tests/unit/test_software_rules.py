"""changeDUState jobs and the software inventory: the rules without I/O, and the
simulator's SoftwareModules on its own tree."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from acs.core import software
from acs.core.plans import PlanFault
from acs.core.tasks import InvalidTask, plan_for, validate_task
from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_2, Envelope, serialize_envelope
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.faults import CpeFault
from cpe_simulator.software import BadPackage, Package, SoftwareModules, make_package, read_package
from cpe_simulator.tree import ParameterTree
from tests.xsd import validate_envelope

EU = "Device.SoftwareModules.ExecutionUnit."
U1 = "0b8f3c57-2d43-4d6c-9a41-5a2f7f0e6a11"
OPS = [
    {"type": "Install", "url": "http://files/a.du", "uuid": U1, "password": "pw"},
    {"type": "Update", "uuid": U1, "version": "1.0"},
    {"type": "Uninstall", "uuid": U1, "executionEnvRef": "Device.SoftwareModules.ExecEnv.1"},
]


def _plan(args: dict) -> object:
    return plan_for(
        7, "changeDUState", args, type_of=lambda _p: None, batch_size=10, root="Device."
    )


def test_a_change_du_state_job_sends_its_operations_and_waits() -> None:
    plan = _plan({"operations": OPS})
    sent = next(plan)
    assert isinstance(sent, m.ChangeDUState) and sent.command_key == "task-7"
    install, update, uninstall = sent.operations
    assert isinstance(install, m.InstallOpStruct) and install.password == "pw"
    assert isinstance(update, m.UpdateOpStruct) and update.version == "1.0"
    assert isinstance(uninstall, m.UninstallOpStruct)
    assert uninstall.execution_env_ref == "Device.SoftwareModules.ExecEnv.1"
    with pytest.raises(StopIteration) as done:
        plan.send(m.ChangeDUStateResponse())
    assert done.value.value == {
        "commandKey": "task-7",
        "status": 1,
        "awaits": "DUStateChangeComplete",
        "operations": ["Install", "Update", "Uninstall"],
    }
    # what the ACS puts on the wire is valid CWMP 1.2
    validate_envelope(serialize_envelope(Envelope(body=sent, cwmp_id="1", cwmp_ns=CWMP_NS_1_2)))


def test_a_cpe_fault_to_change_du_state_faults_the_job() -> None:
    plan = _plan({"operations": OPS[2:], "commandKey": "mine"})
    assert next(plan).command_key == "mine"
    with pytest.raises(PlanFault) as fault:
        plan.send(m.Fault(9000, "Method not supported"))
    assert fault.value.code == 9000


@pytest.mark.parametrize(
    ("operations", "path"),
    [
        ([], "operations"),
        ([{"type": "Install"}], "operations.0.Install"),
        ([{"type": "Install", "url": "http://a", "file": "a.du"}], "operations.0.Install"),
        ([{"type": "Install", "url": "http://a", "uuid": "123"}], "operations.0.Install.uuid"),
        ([{"type": "Update", "version": "2"}], "operations.0.Update"),
        ([{"type": "Uninstall"}], "operations.0.Uninstall.uuid"),
        ([{"type": "Uninstall", "uuid": U1, "extra": 1}], "operations.0.Uninstall.extra"),
        ([{"type": "Remove", "uuid": U1}], "operations.0"),
        ([{"type": "Install", "url": "http://a"}] * 17, "operations"),
    ],
)
def test_bad_operations_are_refused_with_their_path(operations: list, path: str) -> None:
    with pytest.raises(InvalidTask) as bad:
        validate_task("changeDUState", {"operations": operations})
    assert any(e["path"].startswith(path) for e in bad.value.errors), bad.value.errors


def test_an_unresolved_file_name_never_reaches_the_cpe() -> None:
    plan = _plan({"operations": [{"type": "Install", "fileName": "a.du"}]})
    with pytest.raises(PlanFault) as fault:
        next(plan)
    assert fault.value.code == 8002


def test_file_names_are_resolved_to_the_file_server() -> None:
    args = {
        "operations": [
            {"type": "Install", "fileName": "a.du", "uuid": U1},
            {"type": "Update", "uuid": U1, "file": "b.du"},
            {"type": "Install", "url": "http://elsewhere/c.du", "username": "u", "password": "p"},
        ]
    }
    assert software.files_of(args) == [
        ("a.du", "operations.0.fileName"),
        ("b.du", "operations.1.file"),
    ]
    urls = {"a.du": "http://acs/files/a.du", "b.du": "http://acs/files/b.du"}
    resolved = software.resolve_files(args, urls.get, "fs", "fs-pw")
    assert isinstance(resolved, dict)
    a, b, c = resolved["operations"]
    assert a == {
        "type": "Install",
        "uuid": U1,
        "url": urls["a.du"],
        "username": "fs",
        "password": "fs-pw",
    }
    assert b["url"] == urls["b.du"] and "file" not in b
    assert c == args["operations"][2]  # a URL of its own keeps its own credentials
    validate_task("changeDUState", resolved)
    assert software.resolve_files(args, {"a.du": "x"}.get, "", "") == "b.du"


def test_cwmp_before_1_2_has_no_change_du_state() -> None:
    assert "CWMP 1.2" in (software.unsupported("1.0") or "")
    assert software.unsupported("1.1") is not None
    assert software.unsupported("1.2") is None and software.unsupported("1.4") is None


def _result(code: int = 0, uuid: str = U1) -> dict:
    r = m.OpResultStruct(
        uuid=uuid,
        deployment_unit_ref="Device.SoftwareModules.DeploymentUnit.1",
        version="1.0",
        current_state="Installed" if not code else "Failed",
        resolved=not code,
        execution_unit_ref_list=f"{EU}1, {EU}2",
        start_time=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        complete_time=datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC),
        fault=m.FaultStruct(code, "Duplicate Deployment Unit" if code else ""),
    )
    return software.op_result(r)


def test_the_job_succeeds_only_when_every_operation_did() -> None:
    ok = _result()
    assert ok["executionUnitRefList"] == [
        "Device.SoftwareModules.ExecutionUnit.1",
        "Device.SoftwareModules.ExecutionUnit.2",
    ]
    assert ok["startTime"] == "2026-12-01T10:00:00Z" and ok["fault"] is None
    assert software.outcome([ok, ok]) is None
    code, string = software.outcome([ok, _result(9026), _result(9028, "")])  # type: ignore[misc]
    assert code == 9026
    assert string == (
        "2 of 3 failed: operation 2 (" + U1 + "): 9026 Duplicate Deployment Unit; "
        "operation 3 (no UUID): 9028 Duplicate Deployment Unit"
    )
    assert software.outcome([]) == (9002, "DUStateChangeComplete carried no results")


def _tree(model: str = "tr181-gateway") -> ParameterTree:
    return ParameterTree(
        load_template(model),
        Identity.from_serial("SIM00000042"),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url="http://127.0.0.1:30001/cr",
    )


def test_the_simulator_keeps_its_modules_in_its_tree_and_the_acs_reads_them() -> None:
    tree = _tree()
    modules = SoftwareModules(tree)
    assert modules.supported and not SoftwareModules(_tree("tr098-gateway")).supported
    report = modules.install_local(Package("local-tools", "1.0", ("shell", "cron")))
    (result,) = report.results
    assert result.operation_performed == "Install" and result.current_state == "Installed"
    base = "Device.SoftwareModules."
    assert tree.value(base + "DeploymentUnitNumberOfEntries") == "1"
    assert tree.value(base + "ExecutionUnitNumberOfEntries") == "2"
    # the ACS's side: the same tree as a discovery stores it
    values = [(p.name, p.value) for p in tree.get_parameter_values([base])]
    inv = software.inventory("Device.", values)
    (du,) = inv["modules"]
    assert (du["name"], du["uuid"], du["version"], du["status"]) == (
        "local-tools",
        result.uuid,
        "1.0",
        "Installed",
    )
    assert [(u["name"], u["status"], u["instance"]) for u in du["executionUnits"]] == [
        ("shell", "Active", 1),
        ("cron", "Active", 2),
    ]
    assert [e["name"] for e in inv["executionEnvironments"]] == ["apps"]
    # the ACS may not add rows to the device's own tables
    with pytest.raises(CpeFault):
        tree.add_object(base + "DeploymentUnit.", "")


async def test_the_simulator_uninstalls_and_refuses_per_the_du_fault_codes() -> None:
    tree = _tree()
    modules = SoftwareModules(tree)
    uuid = modules.install_local(Package("app", "1.0", ("app",))).results[0].uuid
    env = "Device.SoftwareModules.ExecEnv.1"

    async def run(*ops: object) -> list[m.OpResultStruct]:
        # no operation here downloads, so no HTTP session is needed
        done = await modules.execute(None, m.ChangeDUState(operations=list(ops), command_key="k"))  # type: ignore[arg-type]
        assert done.command_key == "k"
        return done.results

    unknown, bad_env, wrong_version, bad_uuid = await run(
        m.UninstallOpStruct(uuid="00000000-0000-4000-8000-000000000000"),
        m.UninstallOpStruct(uuid=uuid, execution_env_ref="Device.SoftwareModules.ExecEnv.9"),
        m.UninstallOpStruct(uuid=uuid, version="9.9"),
        m.UninstallOpStruct(uuid="nope"),
    )
    assert [r.fault.fault_code for r in (unknown, bad_env, wrong_version, bad_uuid)] == [
        9028,
        9023,
        9028,
        9022,
    ]
    assert bad_env.current_state == "Installed"  # a failed Uninstall leaves the DU
    (gone,) = await run(m.UninstallOpStruct(uuid=uuid, version="1.0", execution_env_ref=env))
    assert (gone.current_state, gone.fault.fault_code, gone.version) == ("Uninstalled", 0, "1.0")
    assert tree.value("Device.SoftwareModules.DeploymentUnitNumberOfEntries") == "0"
    assert tree.value("Device.SoftwareModules.ExecutionUnitNumberOfEntries") == "0"
    (again,) = await run(m.UpdateOpStruct(uuid=uuid))
    assert again.fault.fault_code == 9028


def test_a_package_is_checked_before_it_is_installed() -> None:
    data = make_package("app", "2.0", ("a", "b"))
    assert read_package(data) == Package("app", "2.0", ("a", "b"))
    with pytest.raises(BadPackage):
        read_package(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BadPackage):
        read_package(b"not a package")
