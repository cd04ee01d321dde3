"""Values checked against their parameter's type before they reach a CPE: the
rules, the data-model index they come from, and the jobs and policies that use them."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from acs.core import values
from acs.core.plans import PlanFault
from acs.core.policy_spec import SpecError, check_overrides, compile_spec
from acs.core.tasks import InvalidTask, plan_for, validate_task
from acs.core.values import FAULT_TYPE, FAULT_VALUE, InvalidValue, check, model_rule, wire_type
from acs.cwmp import messages as m

REPO = Path(__file__).resolve().parents[2]
MS = "Device.ManagementServer."
IGD_MS = "InternetGatewayDevice.ManagementServer."


def _generator() -> ModuleType:
    path = REPO / "schemas" / "generate_datamodel_index.py"
    spec = importlib.util.spec_from_file_location("generate_datamodel_index", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_index_is_a_fresh_generation_from_the_bbf_models() -> None:
    gen = _generator()
    fresh = gen.generate(REPO / "schemas" / "bbf")
    committed = (REPO / "acs" / "core" / "datamodel_index.json").read_text(encoding="utf-8")
    assert committed == fresh, "run: .venv/bin/python schemas/generate_datamodel_index.py"


def test_the_index_knows_both_models() -> None:
    interval = model_rule(MS + "PeriodicInformInterval")
    assert interval is not None and interval.xsd_type == "xsd:unsignedInt"
    assert interval.ranges == ((1, None),)
    assert model_rule(IGD_MS + "PeriodicInformInterval") == interval
    ssid = model_rule("Device.WiFi.SSID.3.SSID")  # an instance number matches {i}
    assert ssid is not None and ssid.sizes == ((None, 32),)
    assert model_rule("Device.X_ACME_Thing.Value") is None  # vendor: no rule
    assert model_rule("Device.DeviceInfo.Description") is not None  # sized string


def _rule(path: str, value: str, declared: str | None = None, reported: str | None = None):
    with pytest.raises(InvalidValue) as err:
        check(path, value, declared, reported)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": ")
    return err.value


def test_the_attack_periodic_inform_interval_abc() -> None:
    path = MS + "PeriodicInformInterval"
    err = _rule(path, "abc")
    assert err.code == FAULT_TYPE and "xsd:unsignedInt" in err.rule
    # declaring another type does not sneak it past the model
    assert "xsd:unsignedInt" in _rule(path, "abc", "xsd:string").rule
    assert "xsd:unsignedInt" in _rule(IGD_MS + "PeriodicInformInterval", "abc").rule
    out_of_range = _rule(path, "0")
    assert out_of_range.code == FAULT_VALUE and "at least 1" in out_of_range.rule
    check(path, "300")
    check(path, "300", "xsd:string")  # valid either way
    assert wire_type(path, None, None) == "xsd:unsignedInt"


@pytest.mark.parametrize(
    ("path", "value", "declared", "words"),
    [
        (MS + "PeriodicInformEnable", "yes", None, "xsd:boolean"),
        (MS + "PeriodicInformEnable", "TRUE", None, "xsd:boolean"),
        (MS + "PeriodicInformTime", "2026-13-01T00:00:00Z", None, "xsd:dateTime"),
        (MS + "PeriodicInformTime", "tomorrow", None, "xsd:dateTime"),
        ("Device.WiFi.SSID.1.SSID", "x" * 33, None, "at most 32 characters"),
        ("Device.X_ACME_Fan.Speed", "4294967296", "xsd:unsignedInt", "0 to 4294967295"),
        ("Device.X_ACME_Fan.Speed", "-1", "xsd:unsignedInt", "xsd:unsignedInt"),
        ("Device.X_ACME_Fan.Speed", "2147483648", "xsd:int", "xsd:int"),
        ("Device.X_ACME_Fan.Speed", "1.5", "xsd:long", "xsd:long"),
        ("Device.X_ACME_Fan.Speed", "-1", "xsd:unsignedLong", "xsd:unsignedLong"),
        ("Device.X_ACME_Blob", "not base64!", "xsd:base64", "xsd:base64"),
        ("Device.X_ACME_Blob", "abc", "xsd:hexBinary", "xsd:hexBinary"),
        ("Device.X_ACME_Blob", "1,5", "xsd:decimal", "xsd:decimal"),
        ("Device.X_ACME_Name", "bell\x07", None, "U+0007"),
    ],
)
def test_bad_values_are_refused_naming_the_rule(
    path: str, value: str, declared: str | None, words: str
) -> None:
    assert words in _rule(path, value, declared).rule


def test_enumerations_lists_and_vendor_values() -> None:
    band = "Device.WiFi.MultiAP.APDevice.1.Radio.2.OperatingFrequencyBand"
    err = _rule(band, "7GHz")
    assert "'2.4GHz', '5GHz', '6GHz'" in err.rule and err.code == FAULT_VALUE
    check(band, "5GHz")
    check(band, "X_ACME_60GHz")  # TR-106 lets vendors extend an enumeration
    layers = "Device.ATM.Link.1.LowerLayers"  # a list of strings, at most 1024 long
    check(layers, "Device.DSL.Channel.1,Device.DSL.Channel.2")
    check(layers, "")
    assert "the list must be at most 1024 characters" in _rule(layers, "x," * 600).rule


def test_the_device_is_believed_over_the_model() -> None:
    path = MS + "PeriodicInformInterval"
    # a firmware that reports this parameter as a string takes strings
    check(path, "abc", None, "xsd:string")
    # and a device's own type holds where the model has no rule
    assert "xsd:int" in _rule("Device.X_ACME_Temp", "warm", None, "xsd:int").rule
    assert wire_type(path, None, "xsd:string") == "xsd:string"
    assert wire_type(path, "xsd:unsignedInt", "xsd:string") == "xsd:unsignedInt"


@pytest.mark.parametrize(
    ("path", "value", "declared"),
    [
        (MS + "PeriodicInformEnable", "true", None),
        (MS + "PeriodicInformEnable", "0", None),
        (MS + "PeriodicInformTime", "0001-01-01T00:00:00Z", None),
        (MS + "PeriodicInformTime", "2026-01-31T08:00:00.123456789+02:00", None),
        (MS + "PeriodicInformTime", "2026-01-31T08:00:00", None),
        ("Device.WiFi.SSID.1.SSID", "x" * 32, None),
        ("Device.X_ACME_Fan.Speed", "+0042", "xsd:int"),
        ("Device.X_ACME_Fan.Speed", "18446744073709551615", "xsd:unsignedLong"),
        ("Device.X_ACME_Fan.Speed", "-9223372036854775808", "xsd:long"),
        ("Device.X_ACME_Blob", "aGVsbG8=", "xsd:base64"),
        ("Device.X_ACME_Blob", "00fF", "xsd:hexBinary"),
        ("Device.X_ACME_Blob", "-12.50", "xsd:decimal"),
        ("Device.X_ACME_Name", "tab\tand newline\n are fine", None),
    ],
)
def test_good_values_pass(path: str, value: str, declared: str | None) -> None:
    check(path, value, declared)


def test_a_secret_parameter_value_is_never_in_the_message() -> None:
    path = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
    rule = model_rule(path)
    assert rule is not None and rule.secret
    err = _rule(path, "hunter2-" * 10)  # too long
    assert "hunter2" not in str(err)


# --------------------------------------------------------------------------- jobs


def test_jobs_are_refused_when_queued_with_the_path_of_the_bad_value() -> None:
    with pytest.raises(InvalidTask) as err:
        validate_task(
            "setParameterValues",
            {
                "parameterValues": [
                    [MS + "PeriodicInformEnable", True],
                    [MS + "PeriodicInformInterval", "abc"],
                ]
            },
        )
    assert err.value.code == FAULT_TYPE
    assert err.value.errors == [
        {
            "path": "parameterValues.1.1",
            "message": MS + "PeriodicInformInterval: must be an xsd:unsignedInt:"
            " a whole number from 0 to 4294967295",
        }
    ]
    with pytest.raises(InvalidTask) as err:
        validate_task(
            "addObject",
            {
                "objectName": "Device.NAT.PortMapping.",
                "parameterValues": [["ExternalPort", "99999"]],
            },
        )
    assert err.value.errors[0]["path"] == "parameterValues.0.1"
    assert "Device.NAT.PortMapping.{i}.ExternalPort" in err.value.errors[0]["message"]
    with pytest.raises(InvalidTask) as err:
        validate_task("setParameterValues", {"parameterValues": [["Device.X", {"a": 1}]]})
    assert err.value.errors[0]["message"] == "must be a string, number or boolean"
    validate_task("setParameterValues", {"parameterValues": [[MS + "PeriodicInformInterval", 300]]})


def test_the_device_tree_type_is_checked_and_sent() -> None:
    types = {"Device.X_ACME_Level": "xsd:int"}
    args = {"parameterValues": [["Device.X_ACME_Level", "high"]]}
    validate_task("setParameterValues", args)  # nothing known without the device
    with pytest.raises(InvalidTask) as err:
        validate_task("setParameterValues", args, types.get)
    assert "xsd:int" in err.value.errors[0]["message"]
    # the plan sends a value by the model's type when the tree has none
    plan = plan_for(
        1,
        "setParameterValues",
        {"parameterValues": [[MS + "PeriodicInformInterval", 600]]},
        type_of=lambda _p: None,
        batch_size=10,
        root="Device.",
    )
    request = next(plan)
    assert isinstance(request, m.SetParameterValues)
    assert request.parameter_list[0].xsd_type == "xsd:unsignedInt"


# --------------------------------------------------------------------------- policies


def _spec_errors(spec: dict) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as err:
        compile_spec(1, "p", 0, spec)
    return err.value.errors


def test_the_three_attacks_on_policies_are_refused_when_written() -> None:
    assert _spec_errors({"tags": {"add": [""]}})[0]["path"] == "tags.add.0"
    err = _spec_errors({"tags": {"remove": ["ok", "has space"]}})[0]
    assert err["path"] == "tags.remove.1" and "1-64 letters" in err["message"]


def test_policy_values_paths_and_shapes() -> None:
    errors = _spec_errors(
        {
            "parameters": [
                {"path": "ManagementServer.PeriodicInformInterval", "value": "abc"},
                {"path": "Device..X", "value": "1"},
                {"path": "WiFi.SSID.1.SSID", "value": "{DeviceID.SerialNumber}", "type": "xsd:x"},
                {"path": "ManagementServer.PeriodicInformEnable", "value": "maybe"},
            ],
            "objects": [
                {"path": "NAT.PortMapping.", "keys": {"ExternalPort": "70000"}},
                {"path": "NAT.PortMapping.", "count": -1},
            ],
            "attributes": [{"path": "X.Y", "notification": 7}],
            "refresh": [{"path": "X.", "maxAgeS": "soon"}],
            "download": {"file": ""},
        }
    )
    by_path = {e["path"]: e["message"] for e in errors}
    assert "xsd:unsignedInt" in by_path["parameters.0.value"]
    assert "parameter path" in by_path["parameters.1.path"]
    assert "unknown xsd type" in by_path["parameters.2.type"]
    assert "xsd:boolean" in by_path["parameters.3.value"]
    assert "0 to 65535" in by_path["objects.0.keys.ExternalPort"]
    assert "0 to 1000" in by_path["objects.1.count"]
    assert "0 (off)" in by_path["attributes.0.notification"]
    assert "seconds" in by_path["refresh.0.maxAgeS"]
    assert "file name" in by_path["download.file"]
    # a templated value is checked on the device, when it is rendered
    compiled = compile_spec(
        1,
        "p",
        0,
        {"parameters": [{"path": "ManagementServer.PeriodicInformInterval", "value": "{x}"}]},
    )
    assert compiled.parameters[0].value.text == "{x}"


def test_overrides_are_literal_values_checked_like_jobs() -> None:
    check_overrides([("WiFi.SSID.1.SSID", "mine {not a template}", None)])
    with pytest.raises(SpecError) as err:
        check_overrides([("ManagementServer.PeriodicInformInterval", "abc", None)])
    assert err.value.errors[0]["path"] == "parameters.0.1"


def test_the_index_ships_inside_the_package() -> None:
    # the ACS never reads schemas/ at run time: that folder is not installed
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = pyproject["tool"]["setuptools"]["package-data"]["acs.core"]
    assert "datamodel_index.json" in shipped
    assert Path(values.__file__).with_name("datamodel_index.json").is_file()


def test_an_added_instance_s_own_types_are_checked_before_its_values_are_sent() -> None:
    table = "Device.X_ACME_Rule."
    plan = plan_for(
        7,
        "addObject",
        {"objectName": table, "parameterValues": [["Weight", "heavy"]]},
        type_of=lambda _p: None,
        batch_size=10,
        root="Device.",
    )
    assert isinstance(next(plan), m.AddObject)
    req = plan.send(m.AddObjectResponse(instance_number=3, status=0))
    assert isinstance(req, m.GetParameterNames) and req.parameter_path == table + "3."
    req = plan.send(
        m.GetParameterNamesResponse(
            parameter_list=[m.ParameterInfoStruct(table + "3.Weight", True)]
        )
    )
    assert isinstance(req, m.GetParameterValues)
    with pytest.raises(PlanFault) as err:
        plan.send(
            m.GetParameterValuesResponse(
                parameter_list=[m.ParameterValueStruct(table + "3.Weight", "0", "xsd:unsignedInt")]
            )
        )
    assert err.value.code == FAULT_TYPE
    assert err.value.string.startswith(table + "3.Weight: must be an xsd:unsignedInt")
    assert err.value.detail == {"instanceNumber": 3}


def test_any_job_argument_no_cwmp_message_can_carry_is_refused_with_its_path() -> None:
    # it used to fail the session's serializer instead: an HTTP 500 to the CPE
    for name, args, path in [
        ("getParameterValues", {"parameterNames": ["Device.A", "Device.\x01"]}, "parameterNames.1"),
        ("download", {"url": "http://127.0.0.1/f", "password": "p\x0bw"}, "password"),
        (
            "setParameterValues",
            {"parameterValues": [["Device.X", "\ufffe"]]},
            "parameterValues.0.1",
        ),
    ]:
        with pytest.raises(InvalidTask) as err:
            validate_task(name, args)
        assert err.value.errors[0]["path"] == path
        assert "which a CWMP message cannot carry" in err.value.errors[0]["message"]
        assert "p\x0bw" not in str(err.value.errors)
