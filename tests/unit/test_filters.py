"""The device filter language: grammar, precedence, errors with positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acs.core.filters import (
    And,
    Comparison,
    FilterError,
    IsNull,
    Like,
    Not,
    Or,
    parse_filter,
)


def test_the_example_from_the_docs() -> None:
    expr = parse_filter(
        'DeviceID.ProductClass = "HG8245" AND Device.DeviceInfo.SoftwareVersion < "V3.2"'
        ' AND tag = "lab"'
    )
    assert expr == And(
        (
            Comparison("DeviceID.ProductClass", "=", "HG8245"),
            Comparison("Device.DeviceInfo.SoftwareVersion", "<", "V3.2"),
            Comparison("tag", "=", "lab"),
        )
    )


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_comparison(op: str) -> None:
    assert parse_filter(f"Device.X.Y {op} 5") == Comparison("Device.X.Y", op, 5)
    assert parse_filter(f'LastInform {op} "2026-01-01T00:00:00Z"') == Comparison(
        "LastInform", op, "2026-01-01T00:00:00Z"
    )


def test_like_null_not_numbers_and_escapes() -> None:
    assert parse_filter('SoftwareVersion like "V3.%"') == Like("SoftwareVersion", "V3.%")
    assert parse_filter('SoftwareVersion NOT LIKE "V3.%"') == Like("SoftwareVersion", "V3.%", True)
    assert parse_filter("ProvisioningCode IS NULL") == IsNull("ProvisioningCode")
    assert parse_filter("ProvisioningCode is not null") == IsNull("ProvisioningCode", True)
    assert parse_filter("Device.A.B = 2.5") == Comparison("Device.A.B", "=", 2.5)
    assert parse_filter("Device.A.B = -3") == Comparison("Device.A.B", "=", -3)
    assert parse_filter(r'DeviceID.SerialNumber = "a\"b\\c"') == Comparison(
        "DeviceID.SerialNumber", "=", 'a"b\\c'
    )


def test_precedence_not_over_and_over_or() -> None:
    a, b, c = (Comparison(f"Device.{x}", "=", 1) for x in "ABC")
    assert parse_filter("Device.A = 1 OR Device.B = 1 AND Device.C = 1") == Or((a, And((b, c))))
    assert parse_filter("(Device.A = 1 OR Device.B = 1) AND Device.C = 1") == And((Or((a, b)), c))
    assert parse_filter("NOT Device.A = 1 AND Device.B = 1") == And((Not(a), b))
    assert parse_filter("NOT (Device.A = 1 AND Device.B = 1)") == Not(And((a, b)))


def test_empty_filter_means_all() -> None:
    assert parse_filter("") is None
    assert parse_filter("   ") is None


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ('DeviceID.ProductClass = "x" AND (', 33, "expected a field name"),
        ("Device.A <", 10, "expected a value after '<'"),
        ('Nope = "x"', 0, "unknown field 'Nope'"),
        ('tag < "x"', 4, "tag supports only = and !="),
        ('Device.A = "open', 11, "unterminated string"),
        ("Device.A = 1 Device.B = 2", 13, "expected AND, OR or the end"),
        ("(Device.A = 1", 13, "expected ')'"),
        ("Device.A IS 1", 12, "expected NULL after IS"),
        ("Device.A LIKE 5", 14, "LIKE needs"),
        ("Device.A = 1 # x", 13, "unexpected character '#'"),
    ],
)
def test_errors_name_their_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(text)
    assert err.value.position == position
    assert words in err.value.message
    assert str(err.value).startswith(f"position {position}:")


def test_limits() -> None:
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("Device.A = 1 AND " * 300)
    with pytest.raises(FilterError, match="more than 100 terms"):
        parse_filter(" AND ".join(["Device.A = 1"] * 101))


@given(st.text(max_size=200))
def test_random_text_raises_only_filter_errors(text: str) -> None:
    try:
        parse_filter(text)
    except FilterError:
        pass
