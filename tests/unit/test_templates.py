"""Value templates of provisioning policies (acs.core.templates): parsing, rendering,
device-derived functions and the errors an operator sees. Pure: no DB, no network."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from acs.core.templates import (
    FIELDS,
    FUNCTIONS,
    MAX_LENGTH,
    Context,
    Placeholder,
    Template,
    TemplateError,
    absolute,
    parse_template,
    render,
)

KEY = b"instance-secret-key"
DEVICE = "A0B1C2-MF286D-SN0001ABCD"
FIELD_VALUES: dict[str, str | None] = {
    "DeviceID.ID": DEVICE,
    "DeviceID.OUI": "A0B1C2",
    "DeviceID.ProductClass": "MF286D",
    "DeviceID.SerialNumber": "SN0001ABCD",
    "DeviceID.Manufacturer": "Acme",
    "SoftwareVersion": "1.2.3",
    "HardwareVersion": "HW-V1",
    "ProvisioningCode": "PC42",
}


def ctx(
    *,
    device_id: str = DEVICE,
    root: str = "Device.",
    fields: dict[str, str | None] | None = None,
    values: dict[str, str | None] | None = None,
    key: bytes = KEY,
    value_of: Callable[[str], str | None] | None = None,
) -> Context:
    table = dict(values or {})
    return Context(
        device_id,
        root,
        dict(FIELD_VALUES if fields is None else fields),
        value_of if value_of is not None else table.get,
        key,
    )


def run(text: str, context: Context | None = None) -> str:
    return render(parse_template(text), context or ctx())


def parse_error(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    return info.value


def render_error(text: str, context: Context | None = None) -> TemplateError:
    template = parse_template(text)
    with pytest.raises(TemplateError) as info:
        render(template, context or ctx())
    return info.value


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    "text",
    ["", "plain", "with spaces and : colons", "a.b.c", "ünïcödé ✓", "[0]", "x" * MAX_LENGTH],
)
def test_a_literal_renders_as_itself(text: str) -> None:
    template = parse_template(text)
    assert template.is_literal
    assert template.text == text
    assert render(template, ctx()) == text


def test_an_empty_template_has_no_parts() -> None:
    template = parse_template("")
    assert template.parts == ()
    assert template.is_literal
    assert template.parameters("Device.") == []


def test_a_literal_is_one_part() -> None:
    assert parse_template("hello world").parts == ("hello world",)


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("{{", "{"),
        ("}}", "}"),
        ("{{}}", "{}"),
        ("{{x}}", "{x}"),
        ("a{{b}}c", "a{b}c"),
        ("{{{{", "{{"),
        ('{{"json": 1}}', '{"json": 1}'),
    ],
)
def test_doubled_braces_are_literal_braces(text: str, rendered: str) -> None:
    template = parse_template(text)
    assert template.is_literal
    assert template.parts == (rendered,)
    assert render(template, ctx()) == rendered


def test_escaped_braces_around_a_placeholder() -> None:
    assert run("{{{DeviceID.OUI}}}") == "{A0B1C2}"


def test_escaped_braces_never_reach_value_of() -> None:
    def refuse(path: str) -> str | None:
        raise AssertionError(f"read {path}")

    assert run("{{ManagementServer.URL}}", ctx(value_of=refuse)) == "{ManagementServer.URL}"


def test_parts_split_literals_and_placeholders() -> None:
    template = parse_template("ssid-{DeviceID.SerialNumber[-4:]}-x")
    assert not template.is_literal
    assert template.parts == (
        "ssid-",
        Placeholder("DeviceID.SerialNumber", None, -4, None, True, 5),
        "-x",
    )


def test_adjacent_placeholders() -> None:
    assert run("{DeviceID.OUI}{DeviceID.ProductClass}") == "A0B1C2MF286D"
    assert len(parse_template("{DeviceID.OUI}{DeviceID.ProductClass}").parts) == 2


def test_template_is_frozen_and_hashable() -> None:
    a = parse_template("x-{DeviceID.OUI}")
    b = parse_template("x-{DeviceID.OUI}")
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.text = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- device fields


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_device_field_renders(name: str) -> None:
    assert run("{" + name + "}") == FIELD_VALUES[name]


def test_fields_in_a_sentence() -> None:
    assert (
        run("{DeviceID.Manufacturer} {DeviceID.ProductClass} v{SoftwareVersion}")
        == "Acme MF286D v1.2.3"
    )


def test_whitespace_inside_braces_is_ignored() -> None:
    assert run("{ DeviceID.OUI }") == "A0B1C2"
    assert run("{  DeviceID.SerialNumber [-4:] }") == "ABCD"


def test_a_field_is_not_read_as_a_parameter() -> None:
    def refuse(path: str) -> str | None:
        raise AssertionError(f"read {path}")

    assert run("{DeviceID.SerialNumber}", ctx(value_of=refuse)) == "SN0001ABCD"


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("{DeviceID.SerialNumber[-4:]}", "ABCD"),
        ("{DeviceID.SerialNumber[:3]}", "SN0"),
        ("{DeviceID.SerialNumber[2:6]}", "0001"),
        ("{DeviceID.SerialNumber[2:-4]}", "0001"),
        ("{DeviceID.SerialNumber[:]}", "SN0001ABCD"),
        ("{DeviceID.SerialNumber[0]}", "S"),
        ("{DeviceID.SerialNumber[-1]}", "D"),
        ("{DeviceID.SerialNumber[9]}", "D"),
        ("{DeviceID.SerialNumber[-10]}", "S"),
        ("{DeviceID.SerialNumber[:100]}", "SN0001ABCD"),  # slices never fail
        ("{DeviceID.SerialNumber[100:]}", ""),
        ("{DeviceID.SerialNumber[-100:]}", "SN0001ABCD"),
        ("ssid-{DeviceID.SerialNumber[-4:]}", "ssid-ABCD"),
    ],
)
def test_index_and_slice(text: str, rendered: str) -> None:
    assert run(text) == rendered


@pytest.mark.parametrize(
    ("text", "start", "stop", "is_slice"),
    [
        ("{DeviceID.OUI[-4:]}", -4, None, True),
        ("{DeviceID.OUI[:3]}", None, 3, True),
        ("{DeviceID.OUI[1:3]}", 1, 3, True),
        ("{DeviceID.OUI[:]}", None, None, True),
        ("{DeviceID.OUI[0]}", 0, None, False),
        ("{DeviceID.OUI[-2]}", -2, None, False),
        ("{DeviceID.OUI}", None, None, False),
    ],
)
def test_index_and_slice_are_parsed(
    text: str, start: int | None, stop: int | None, is_slice: bool
) -> None:
    (part,) = parse_template(text).parts
    assert isinstance(part, Placeholder)
    assert part.name == "DeviceID.OUI"
    assert part.argument is None
    assert (part.start, part.stop, part.is_slice) == (start, stop, is_slice)


@pytest.mark.parametrize("index", [10, 11, -11, 1000])
def test_an_index_outside_the_value_is_an_error(index: int) -> None:
    err = render_error("ab{DeviceID.SerialNumber[" + str(index) + "]}")
    assert f"index {index}" in str(err)
    assert "DeviceID.SerialNumber" in str(err)
    assert err.position == 2
    assert "(at character 2)" in str(err)


def test_an_index_into_an_empty_value_is_an_error() -> None:
    err = render_error(
        "{ProvisioningCode[0]}", ctx(fields={**FIELD_VALUES, "ProvisioningCode": ""})
    )
    assert err.position == 0


@pytest.mark.parametrize("missing", ["absent", "none"])
def test_a_field_without_a_value_is_an_error(missing: str) -> None:
    fields = dict(FIELD_VALUES)
    if missing == "absent":
        del fields["ProvisioningCode"]
    else:
        fields["ProvisioningCode"] = None
    err = render_error("pc={ProvisioningCode}", ctx(fields=fields))
    assert "ProvisioningCode" in str(err)
    assert err.position == 3


def test_an_empty_field_value_is_not_missing() -> None:
    assert run("[{ProvisioningCode}]", ctx(fields={**FIELD_VALUES, "ProvisioningCode": ""})) == "[]"


# --------------------------------------------------------------------------- parameters


def test_absolute_keeps_absolute_paths() -> None:
    assert absolute("Device.DeviceInfo.ModelName", "Device.") == "Device.DeviceInfo.ModelName"
    assert absolute("Device.X", "InternetGatewayDevice.") == "Device.X"
    assert absolute("InternetGatewayDevice.X", "Device.") == "InternetGatewayDevice.X"
    assert absolute("InternetGatewayDevice.X", "InternetGatewayDevice.") == (
        "InternetGatewayDevice.X"
    )


def test_absolute_puts_relative_paths_under_the_root() -> None:
    assert absolute("ManagementServer.URL", "Device.") == "Device.ManagementServer.URL"
    assert absolute("ManagementServer.URL", "InternetGatewayDevice.") == (
        "InternetGatewayDevice.ManagementServer.URL"
    )
    # "DeviceInfo." starts like "Device" but is not the root object
    assert absolute("DeviceInfo.UpTime", "Device.") == "Device.DeviceInfo.UpTime"
    assert absolute("WiFi.SSID.1.", "Device.") == "Device.WiFi.SSID.1."


def test_an_absolute_parameter_renders() -> None:
    values = {"Device.DeviceInfo.ModelName": "MF286D"}
    assert run("m={Device.DeviceInfo.ModelName}", ctx(values=values)) == "m=MF286D"


@pytest.mark.parametrize("root", ["Device.", "InternetGatewayDevice."])
def test_a_relative_parameter_reads_under_the_root(root: str) -> None:
    read: list[str] = []

    def value_of(path: str) -> str | None:
        read.append(path)
        return {root + "ManagementServer.PeriodicInformInterval": "300"}.get(path)

    assert run("{ManagementServer.PeriodicInformInterval}", ctx(root=root, value_of=value_of)) == (
        "300"
    )
    assert read == [root + "ManagementServer.PeriodicInformInterval"]


def test_an_absolute_path_of_the_other_root_is_not_rewritten() -> None:
    read: list[str] = []

    def value_of(path: str) -> str | None:
        read.append(path)
        return "v"

    run("{Device.DeviceInfo.ModelName}", ctx(root="InternetGatewayDevice.", value_of=value_of))
    assert read == ["Device.DeviceInfo.ModelName"]


def test_parameter_paths_with_instance_numbers() -> None:
    values = {"Device.WiFi.SSID.1.SSID": "home-net"}
    assert run("{WiFi.SSID.1.SSID}-5g", ctx(values=values)) == "home-net-5g"
    assert run("{WiFi.SSID.1.SSID[:4]}", ctx(values=values)) == "home"


@pytest.mark.parametrize("value", [None, "absent"])
def test_a_parameter_without_a_value_is_an_error(value: str | None) -> None:
    values: dict[str, str | None] = {}
    if value is None:
        values["Device.ManagementServer.URL"] = None
    err = render_error("url={ManagementServer.URL}", ctx(values=values))
    assert "Device.ManagementServer.URL" in str(err)  # the absolute path
    assert err.position == 4


def test_an_empty_parameter_value_is_not_missing() -> None:
    assert run("<{X.Y}>", ctx(values={"Device.X.Y": ""})) == "<>"


def test_parameters_lists_what_a_template_reads() -> None:
    template = parse_template(
        "{ManagementServer.URL}/{DeviceID.SerialNumber}/{secret:cr}/{spread_time:60}/"
        "{Device.DeviceInfo.ModelName[:3]}/{SoftwareVersion}"
    )
    assert template.parameters("Device.") == [
        "Device.ManagementServer.URL",
        "Device.DeviceInfo.ModelName",
    ]
    assert template.parameters("InternetGatewayDevice.") == [
        "InternetGatewayDevice.ManagementServer.URL",
        "Device.DeviceInfo.ModelName",
    ]


def test_parameters_of_a_literal_is_empty() -> None:
    assert parse_template("{{ManagementServer.URL}}").parameters("Device.") == []


def test_parameters_keeps_order_and_repeats() -> None:
    template = parse_template("{B.x}{A.y}{B.x}")
    assert template.parameters("Device.") == ["Device.B.x", "Device.A.y", "Device.B.x"]


# --------------------------------------------------------------------------- secret


def test_secret_is_20_hex_characters() -> None:
    value = run("{secret:cr}")
    assert re.fullmatch(r"[0-9a-f]{20}", value)


def test_secret_is_stable_per_device_and_key() -> None:
    assert run("{secret:cr}") == run("{secret:cr}")
    assert run("{secret:cr}", ctx(root="InternetGatewayDevice.")) == run("{secret:cr}")
    # the other fields do not matter, only the device id
    assert run("{secret:cr}", ctx(fields={})) == run("{secret:cr}")


def test_secret_differs_across_devices() -> None:
    values = {run("{secret:cr}", ctx(device_id=f"OUI-PC-SN{i:04d}")) for i in range(50)}
    assert len(values) == 50


def test_secret_differs_across_names() -> None:
    names = ["cr", "wifi", "admin", "a", "A", "a_b", "a-b", "x" * 64]
    assert len({run("{secret:" + n + "}") for n in names}) == len(names)


def test_secret_differs_across_keys() -> None:
    assert run("{secret:cr}", ctx(key=b"one")) != run("{secret:cr}", ctx(key=b"two"))


def test_secret_depends_on_the_key_not_only_the_device() -> None:
    value = run("{secret:cr}")
    assert value != run("{secret:cr}", ctx(key=b""))
    assert DEVICE not in value


def test_secret_can_be_sliced() -> None:
    full = run("{secret:wifi}")
    assert run("{secret:wifi[:8]}") == full[:8]
    assert run("{ secret : wifi [-4:] }") == full[-4:]
    assert run("{secret:wifi[0]}") == full[0]


def test_secret_placeholder_is_parsed() -> None:
    (part,) = parse_template("{secret:cr-1}").parts
    assert part == Placeholder("secret", "cr-1", None, None, False, 0)


@pytest.mark.parametrize(
    "text",
    ["{secret:}", "{secret: }", "{secret:a b}", "{secret:a.b}", "{secret:a/b}", "{secret:é}"],
)
def test_a_bad_secret_name_is_an_error(text: str) -> None:
    err = parse_error("x" + text)
    assert "secret" in str(err)
    assert err.position == 1


def test_a_secret_name_is_at_most_64_characters() -> None:
    parse_template("{secret:" + "a" * 64 + "}")
    assert parse_error("{secret:" + "a" * 65 + "}").position == 0


# --------------------------------------------------------------------------- spread_time


def _offset(text: str) -> int:
    at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


def test_spread_time_is_a_date_time_within_the_period() -> None:
    value = run("{spread_time:3600}")
    assert re.fullmatch(r"1970-01-01T00:[0-5]\d:[0-5]\dZ", value)
    assert 0 <= _offset(value) < 3600


def test_spread_time_is_stable_per_device() -> None:
    assert run("{spread_time:3600}") == run("{spread_time:3600}")
    assert run("{spread_time:3600}", ctx(key=b"other")) == run("{spread_time:3600}")


@pytest.mark.parametrize("period", [1, 2, 60, 3600, 86400, 31536000])
def test_spread_time_stays_within_any_period(period: int) -> None:
    for i in range(100):
        value = run("{spread_time:" + str(period) + "}", ctx(device_id=f"dev-{i}"))
        assert re.fullmatch(r"1970-\d\d-\d\dT\d\d:\d\d:\d\dZ", value)
        assert 0 <= _offset(value) < period


def test_spread_time_of_one_second_is_the_epoch() -> None:
    assert run("{spread_time:1}", ctx(device_id="whatever")) == "1970-01-01T00:00:00Z"


def test_spread_time_spreads_devices_over_the_period() -> None:
    values = [
        run("{spread_time:3600}", ctx(device_id=f"A0B1C2-MF286D-SN{i:06d}")) for i in range(200)
    ]
    assert len(set(values)) > 100
    offsets = [_offset(v) for v in values]
    # both halves of the hour get devices
    assert any(o < 1800 for o in offsets) and any(o >= 1800 for o in offsets)


@pytest.mark.parametrize("period", ["1", "3600", "0300", "31536000"])
def test_spread_time_accepts_a_period(period: str) -> None:
    (part,) = parse_template("{spread_time:" + period + "}").parts
    assert isinstance(part, Placeholder)
    assert part.name == "spread_time"
    assert part.argument == period


@pytest.mark.parametrize(
    "period", ["0", "00", "31536001", "-5", "", "1.5", "1e3", "abc", "3600s", "99999999999999"]
)
def test_spread_time_out_of_range_is_an_error(period: str) -> None:
    err = parse_error("ab{spread_time:" + period + "}")
    assert "spread_time" in str(err)
    assert err.position == 2


def test_spread_time_with_a_non_ascii_digit_is_a_template_error() -> None:
    parse_error("{spread_time:²}")


# --------------------------------------------------------------------------- parse errors


def test_an_unclosed_brace_is_an_error() -> None:
    err = parse_error("abc{DeviceID.OUI")
    assert "never closed" in str(err)
    assert err.position == 3
    assert "(at character 3)" in str(err)


def test_an_unclosed_brace_at_the_end() -> None:
    assert parse_error("x{").position == 1


def test_an_unclosed_brace_after_a_placeholder() -> None:
    assert parse_error("{DeviceID.OUI}-{").position == 15


def test_a_stray_closing_brace_is_an_error() -> None:
    err = parse_error("ab}c")
    assert "'}'" in str(err)
    assert err.position == 2


def test_a_stray_closing_brace_after_an_escape() -> None:
    assert parse_error("}}}").position == 2
    assert parse_error("{DeviceID.OUI}}").position == 14


@pytest.mark.parametrize("name", ["foo", "Secret", "spread", "exec", "__import__"])
def test_an_unknown_function_is_an_error(name: str) -> None:
    err = parse_error("xy{" + name + ":1}")
    assert "unknown function" in str(err)
    assert repr(name) in str(err)
    assert "secret, spread_time" in str(err)
    assert err.position == 2


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_without_an_argument_is_an_error(name: str) -> None:
    err = parse_error("-{" + name + "}")
    assert "needs an argument" in str(err)
    assert err.position == 1


@pytest.mark.parametrize(
    "body",
    [
        "",
        " ",
        "1abc",
        "a b",
        "a..b",
        ".a",
        "a.b-c",
        "__import__('os')",
        "x+1",
        "a{b",
        "DeviceID.SerialNumber[1:2:3]",
    ],
)
def test_a_bad_name_is_an_error(body: str) -> None:
    err = parse_error("ok{" + body + "}")
    assert err.position == 2


@pytest.mark.parametrize("text", ["{Device.X.}", "{ManagementServer.}", "{WiFi.SSID.1.}"])
def test_an_object_path_is_an_error(text: str) -> None:
    assert parse_error("z" + text).position == 1


def test_an_object_path_error_says_it_is_an_object() -> None:
    err = parse_error("{Device.X.}")
    assert "object" in str(err)


@pytest.mark.parametrize("text", ["{DeviceID.OUI[]}", "{DeviceID.OUI []}", "{secret:x[]}"])
def test_an_empty_index_is_an_error(text: str) -> None:
    err = parse_error("..." + text)
    assert "empty index" in str(err)
    assert err.position == 3


def test_a_too_long_template_is_an_error() -> None:
    parse_template("a" * MAX_LENGTH)
    err = parse_error("a" * (MAX_LENGTH + 1))
    assert str(MAX_LENGTH) in str(err)
    assert err.position is None
    assert "at character" not in str(err)


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)
    err = TemplateError("boom", 7)
    assert str(err) == "boom (at character 7)"
    assert err.position == 7
    assert str(TemplateError("boom")) == "boom"


def test_the_first_error_is_reported() -> None:
    assert parse_error("{foo:1} {").position == 0


def test_nothing_is_evaluated() -> None:
    # things that look like code are names that do not parse, never executed
    for text in ["{1+1}", "{__class__}", "{open('x')}", "{DeviceID.OUI.upper()}"]:
        try:
            template = parse_template(text)
        except TemplateError:
            continue
        with pytest.raises(TemplateError):
            render(template, ctx())


def test_render_of_a_hand_built_template() -> None:
    template = Template("x", ("a", Placeholder("DeviceID.OUI", None, 0, 2, True, 1), "b"))
    assert render(template, ctx()) == "aA0b"
