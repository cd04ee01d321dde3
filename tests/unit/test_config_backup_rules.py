"""Config backup and restore, the pure parts: the jobs' arguments, the policy's
``backup`` rule, and the simulator's configuration file."""

from __future__ import annotations

import pytest

from acs.core.policy_spec import SpecError, compile_spec
from acs.core.tasks import InvalidTask, validate_task
from acs.services.backups import needs_grant, restorable
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.faults import CpeFault
from cpe_simulator.transfers import config_file, config_file_parameters
from cpe_simulator.tree import ParameterTree


def tree(serial: str, model: str = "tr181-gateway") -> ParameterTree:
    return ParameterTree(
        load_template(model),
        Identity.from_serial(serial, software_version="1.0.0"),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url=f"http://127.0.0.1:30000/{serial}",
        connection_request_username=f"cr-{serial}",
        connection_request_password="cr-secret",
        acs_username=f"acs-{serial}",
        acs_password="acs-secret",
    )


def test_an_upload_needs_no_url_and_a_restore_names_one_source() -> None:
    assert validate_task("upload", {}).url is None  # type: ignore[attr-defined]
    assert needs_grant("upload", {}) and not needs_grant("upload", {"url": "http://x/up"})
    restore = validate_task("download", {"backupId": 7, "fileType": "3 Vendor Configuration File"})
    assert restore.backupId == 7  # type: ignore[attr-defined]
    assert needs_grant("download", {"backupId": 7})
    assert not needs_grant("download", {"fileName": "f.bin"})
    for bad in ({"backupId": 7, "url": "http://x/f"}, {"backupId": 0}, {"backupId": "7x"}, {}):
        with pytest.raises(InvalidTask):
            validate_task("download", bad)


def test_only_configuration_files_are_restorable() -> None:
    assert restorable("1 Vendor Configuration File") and restorable("3 Vendor Configuration File")
    assert restorable("X 00D09E Configuration Backup")
    assert not restorable("2 Vendor Log File") and not restorable("4 Vendor Log File")


@pytest.mark.parametrize(
    ("backup", "path"),
    [
        ("weekly", "backup"),
        ({"every": 59}, "backup.every"),
        ({"every": 90.5}, "backup.every"),
        ({"every": True}, "backup.every"),
        ({"onFirmwareChange": "yes"}, "backup.onFirmwareChange"),
        ({"fileType": ""}, "backup.fileType"),
    ],
)
def test_a_policys_backup_rule_is_checked_with_the_fields_path(backup: object, path: str) -> None:
    with pytest.raises(SpecError) as refused:
        compile_spec(1, "p", 0, {"backup": backup})
    assert [e["path"] for e in refused.value.errors] == [path]


def test_a_policys_backup_rule_compiles() -> None:
    spec = {
        "backup": {
            "every": 604800,
            "onFirmwareChange": True,
            "fileType": "3 Vendor Configuration File",
        }
    }
    assert compile_spec(1, "p", 0, spec).name == "p"


def test_the_configuration_file_is_the_trees_writable_values_without_credentials() -> None:
    a = tree("SIM1")
    a.set_parameter_values(config_file_parameters(b"Device.WiFi.SSID.1.SSID=from-a\n"), "")
    made = config_file(a)
    assert made == config_file(a)  # the same tree, the same bytes
    lines = made.decode().splitlines()
    assert lines[0].startswith("#") and lines[1:] == sorted(lines[1:])
    assert "Device.WiFi.SSID.1.SSID=from-a" in lines
    assert "Device.ManagementServer.PeriodicInformInterval=" in made.decode()
    for secret in ("cr-secret", "acs-secret", "cr-SIM1", "acs-SIM1"):
        assert secret not in made.decode()
    assert not any(
        p.name.rsplit(".", 1)[-1].endswith(("Password", "Username"))
        for p in config_file_parameters(made)
    )


@pytest.mark.parametrize("model", ["tr181-gateway", "tr098-gateway"])
def test_a_configuration_file_restored_onto_another_device_gives_it_the_same_values(
    model: str,
) -> None:
    a, b = tree("SIM1", model), tree("SIM2", model)
    root = a.root
    name = next(
        p.name
        for p in a.get_parameter_names(root, False)
        if p.writable and p.name.endswith("PeriodicInformInterval")
    )
    a.set_parameter_values(config_file_parameters(f"{name}=1234\n".encode()), "")
    b.set_parameter_values(config_file_parameters(config_file(a)), "")
    assert b.value(name) == "1234"
    assert config_file(b) == config_file(a)
    # the replacement keeps its own identity and credentials
    assert b.value(f"{root}ManagementServer.ConnectionRequestURL").endswith("SIM2")


def test_a_configuration_file_the_device_cannot_take_is_refused_whole() -> None:
    b = tree("SIM2")
    before = config_file(b)
    bad = b"Device.WiFi.SSID.1.SSID=ok\nDevice.WiFi.SSID.2.SSID=" + b"x" * 40 + b"\n"
    with pytest.raises(CpeFault) as refused:
        b.set_parameter_values(config_file_parameters(bad), "")
    assert refused.value.code == 9003
    assert config_file(b) == before  # all or nothing
    with pytest.raises(CpeFault) as garbled:
        config_file_parameters(b"no equals sign here\n")
    assert garbled.value.code == 9018
