"""The device filter language: grammar, precedence, literals, errors with positions, limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from acs.core.filters import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TERMS,
    And,
    Comparison,
    Expr,
    FilterError,
    IsNull,
    Like,
    Not,
    Or,
    parse_filter,
    parse_time,
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
    assert parse_filter(f'InternetGatewayDevice.X {op} "a"') == Comparison(
        "InternetGatewayDevice.X", op, "a"
    )
    assert parse_filter(f'LastInform {op} "2026-01-01T00:00:00Z"') == Comparison(
        "LastInform", op, "2026-01-01T00:00:00Z"
    )
    # no spaces needed around operators
    assert parse_filter(f"Device.X.Y{op}-5") == Comparison("Device.X.Y", op, -5)


@pytest.mark.parametrize(
    "field",
    [
        "DeviceID.ID",
        "DeviceID.OUI",
        "DeviceID.ProductClass",
        "DeviceID.SerialNumber",
        "DeviceID.Manufacturer",
        "SoftwareVersion",
        "HardwareVersion",
        "ProvisioningCode",
        "LastInform",
        "LastBoot",
        "LastBootstrap",
        "Registered",
        "Device.WiFi.SSID.1.SSID",
        "InternetGatewayDevice.X_ACME-COM_Foo.Bar",
    ],
)
def test_every_field_is_known(field: str) -> None:
    assert parse_filter(f"{field} IS NULL") == IsNull(field)


def test_like_null_and_keywords_in_any_case() -> None:
    assert parse_filter('SoftwareVersion like "V3.%"') == Like("SoftwareVersion", "V3.%")
    assert parse_filter('SoftwareVersion NoT LiKe "V3._"') == Like("SoftwareVersion", "V3._", True)
    assert parse_filter("ProvisioningCode IS NULL") == IsNull("ProvisioningCode")
    assert parse_filter("ProvisioningCode is not null") == IsNull("ProvisioningCode", True)
    # "= NULL" would never match in SQL; the language reads it as IS NULL
    assert parse_filter("Device.A = NULL") == IsNull("Device.A")
    assert parse_filter("Device.A != null") == IsNull("Device.A", True)
    assert parse_filter("Device.A = 1 and not Device.B = 2 or Device.C = 3") == Or(
        (
            And((Comparison("Device.A", "=", 1), Not(Comparison("Device.B", "=", 2)))),
            Comparison("Device.C", "=", 3),
        )
    )


def test_literals_numbers_and_escapes() -> None:
    assert parse_filter("Device.A.B = 2.5") == Comparison("Device.A.B", "=", 2.5)
    assert parse_filter("Device.A.B = -3") == Comparison("Device.A.B", "=", -3)
    assert parse_filter("Device.A.B = 007") == Comparison("Device.A.B", "=", 7)
    # text fields keep a bare number as written: OUIs and serials have leading zeros
    assert parse_filter("DeviceID.OUI = 001122") == Comparison("DeviceID.OUI", "=", "001122")
    assert parse_filter("SoftwareVersion = 3.10") == Comparison("SoftwareVersion", "=", "3.10")
    assert parse_filter("tag = 42") == Comparison("tag", "=", "42")
    assert parse_filter("LastInform > 1767225600") == Comparison("LastInform", ">", 1767225600)
    assert parse_filter(r'DeviceID.SerialNumber = "a\"b\\c"') == Comparison(
        "DeviceID.SerialNumber", "=", 'a"b\\c'
    )
    assert parse_filter('Device.A = ""') == Comparison("Device.A", "=", "")
    assert parse_filter('Device.A = "AND ( ) = \\n"') == Comparison("Device.A", "=", "AND ( ) = n")
    assert parse_filter('Device.A = "x\ny"') == Comparison("Device.A", "=", "x\ny")


def test_precedence_not_over_and_over_or() -> None:
    a, b, c = (Comparison(f"Device.{x}", "=", 1) for x in "ABC")
    assert parse_filter("Device.A = 1 OR Device.B = 1 AND Device.C = 1") == Or((a, And((b, c))))
    assert parse_filter("Device.A = 1 AND Device.B = 1 OR Device.C = 1") == Or((And((a, b)), c))
    assert parse_filter("(Device.A = 1 OR Device.B = 1) AND Device.C = 1") == And((Or((a, b)), c))
    assert parse_filter("NOT Device.A = 1 AND Device.B = 1") == And((Not(a), b))
    assert parse_filter("NOT (Device.A = 1 AND Device.B = 1)") == Not(And((a, b)))
    assert parse_filter("NOT NOT Device.A = 1") == Not(Not(a))
    assert parse_filter("((Device.A = 1))") == a
    assert parse_filter("Device.A = 1 OR Device.B = 1 OR Device.C = 1") == Or((a, b, c))


def test_empty_filter_means_all() -> None:
    assert parse_filter("") is None
    assert parse_filter("  \t\n ") is None


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ('DeviceID.ProductClass = "x" AND (', 33, "expected a field name, got the end"),
        ('DeviceID.ProductClass = "x" AND Device.Foo.Bar <', 48, "expected a value after '<'"),
        ('Device.A = 1 AND Nope = "x"', 17, "unknown field 'Nope'"),
        ("deviceid.oui = 1", 0, "unknown field 'deviceid.oui'"),
        ('tag < "x"', 4, "tag supports only = and !="),
        ('tag LIKE "x%"', 4, "tag supports only = and !="),
        ("tag IS NULL", 4, "tag supports only = and !="),
        ('LastInform LIKE "2026%"', 11, "is a time"),
        ('LastInform > "yesterday"', 13, "ISO 8601"),
        ('Device.A = "open', 11, "unterminated string"),
        ("Device.A = 1 Device.B = 2", 13, "expected AND, OR or the end"),
        ("(Device.A = 1", 13, "expected ')' to close the '(' at position 0"),
        ("Device.A = 1)", 12, "')' without a matching '('"),
        ("Device.A IS 1", 12, "expected NULL after IS"),
        ("Device.A IS NOT 1", 16, "expected NULL after IS NOT"),
        ("Device.A NOT = 1", 9, "expected LIKE after NOT"),
        ("Device.A LIKE 5", 14, "LIKE needs"),
        ("Device.A 5", 9, "expected an operator"),
        ("Device.A = 1 # x", 13, "unexpected character '#'"),
        ("Device.A = V3.2", 11, 'put text in double quotes, e.g. "V3.2"'),
        ("Device.A = 5abc", 11, "put text in double quotes"),
        ("Device.A = -", 11, "unexpected character '-'"),
        ('Device.WiFi. = "x"', 0, "is an object, not a parameter"),
        ('Device..A = "x"', 0, "malformed parameter path"),
        ("Device.A < NULL", 11, "expected a value after '<', got 'NULL'"),
        ("Device.A = 1 AND", 16, "expected a field name, got the end"),
        ("OR Device.A = 1", 0, "expected a field name, got 'OR'"),
        ("Device.A = 1 \u00a0", 13, "unexpected character"),
        # the database refuses these at query time, in every session of every device
        ('DeviceID.Manufacturer LIKE "\\\\"', 27, "cannot end with a lone backslash"),
        ('Device.A NOT LIKE "a%\\\\\\\\\\\\"', 18, "cannot end with a lone backslash"),
        ('tag = "a\x00"', 8, "U+0000 is not allowed"),
        ('Device.A = "\ud800"', 12, "U+D800 is not allowed"),
    ],
)
def test_errors_name_their_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(text)
    assert err.value.position == position
    assert words in err.value.message
    assert str(err.value) == f"position {position}: {err.value.message}"


def test_like_patterns_keep_their_escapes() -> None:
    # an escaped backslash at the end is a literal backslash, which LIKE takes
    assert parse_filter('DeviceID.Manufacturer LIKE "a\\\\\\\\"') == Like(
        "DeviceID.Manufacturer", "a\\\\"
    )
    assert parse_filter('DeviceID.Manufacturer LIKE "50\\\\%"') == Like(
        "DeviceID.Manufacturer", "50\\%"
    )


def test_limits() -> None:
    at_limit = "Device.A = 1" + " " * (MAX_LENGTH - len("Device.A = 1"))
    assert parse_filter(at_limit) == Comparison("Device.A", "=", 1)
    with pytest.raises(FilterError, match="the limit is 4096") as err:
        parse_filter(at_limit + " ")
    assert err.value.position == MAX_LENGTH

    terms = ["Device.A = 1"] * MAX_TERMS
    assert isinstance(parse_filter(" AND ".join(terms)), And)
    with pytest.raises(FilterError, match="more than 100 terms") as err:
        parse_filter(" AND ".join([*terms, "Device.B = 2"]))
    assert err.value.position == len(" AND ".join(terms)) + len(" AND ")

    assert parse_filter("(" * MAX_DEPTH + "Device.A = 1" + ")" * MAX_DEPTH) is not None
    with pytest.raises(FilterError, match="nested more than") as err:
        parse_filter("(" * (MAX_DEPTH + 1) + "Device.A = 1" + ")" * (MAX_DEPTH + 1))
    assert err.value.position == MAX_DEPTH
    # a recursive parser must not hit Python's recursion limit on 4 KB of input
    for deep in ("(" * 4000, "NOT " * 1000 + "Device.A = 1"):
        with pytest.raises(FilterError, match="nested more than"):
            parse_filter(deep)


def test_parse_time() -> None:
    assert parse_time("2026-01-31T08:00:00Z") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert parse_time("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time(10**20)


@given(st.text(max_size=300))
def test_random_text_raises_only_filter_errors(text: str) -> None:
    try:
        parse_filter(text)
    except FilterError as err:
        assert 0 <= err.position <= len(text)


# text made of the language's own pieces reaches far more of the parser
_PIECES = st.sampled_from(
    [
        "Device.A",
        "DeviceID.OUI",
        "tag",
        "LastInform",
        "Nope",
        "=",
        "!=",
        "<",
        ">=",
        "AND",
        "OR",
        "NOT",
        "LIKE",
        "IS",
        "NULL",
        "(",
        ")",
        '"x"',
        '"2026-01-01"',
        '"\\"',
        "12",
        "-1.5",
        " ",
    ]
)


@settings(max_examples=300)
@given(st.lists(_PIECES, max_size=25))
def test_random_token_soup_raises_only_filter_errors(pieces: list[str]) -> None:
    text = " ".join(pieces)
    try:
        parse_filter(text)
    except FilterError as err:
        assert 0 <= err.position <= len(text)


_FIELDS = st.sampled_from(["Device.A.B", "InternetGatewayDevice.X.1.Y", "DeviceID.ProductClass"])
# NUL is not in the language (PostgreSQL cannot hold it in text)
_STRINGS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=8,
)
# nor a LIKE pattern ending with LIKE's escape character and nothing to escape
_PATTERNS = _STRINGS.filter(lambda p: (len(p) - len(p.rstrip("\\"))) % 2 == 0)


def _terms() -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Comparison, _FIELDS, st.sampled_from(["=", "!=", "<", ">="]), _STRINGS),
        st.builds(Like, _FIELDS, _PATTERNS, st.booleans()),
        st.builds(IsNull, _FIELDS, st.booleans()),
    )


_EXPRS = st.recursive(
    _terms(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=12,
)


def _render(e: Expr) -> str:
    """The filter text of an AST, parenthesising every compound."""
    if isinstance(e, Comparison):
        return f"{e.field} {e.op} {_quote(str(e.value))}"
    if isinstance(e, Like):
        return f"{e.field} {'NOT ' if e.negated else ''}LIKE {_quote(e.pattern)}"
    if isinstance(e, IsNull):
        return f"{e.field} IS {'NOT ' if e.negated else ''}NULL"
    if isinstance(e, Not):
        return f"NOT {_render(e.item)}" if isinstance(e.item, Not) else f"NOT ({_render(e.item)})"
    joiner = " AND " if isinstance(e, And) else " OR "
    return joiner.join(f"({_render(x)})" for x in e.items)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=200)
@given(_EXPRS)
def test_rendered_ast_parses_back_to_itself(expr: Expr) -> None:
    try:
        parsed = parse_filter(_render(expr))
    except FilterError as err:
        # long NOT chains can exceed the nesting limit; anything else is a bug
        assume("nested more than" not in err.message)
        raise
    assert parsed == expr


# ----------------------------------------------------------------- bounds PostgreSQL would hit


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_time_out_of_range_once_in_utc_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time(text)
    with pytest.raises(FilterError) as err:
        parse_filter(f'LastInform < "{text}"')
    assert err.value.position == len("LastInform < ")


def test_a_time_with_an_offset_is_returned_in_utc() -> None:
    when = parse_time("2026-01-31T08:00:00+02:00")
    assert when == datetime(2026, 1, 31, 6, tzinfo=UTC) and when.utcoffset().total_seconds() == 0


def test_like_may_not_end_in_a_dangling_backslash() -> None:
    with pytest.raises(FilterError, match="backslash"):
        parse_filter('DeviceID.SerialNumber LIKE "abc\\\\"')
    # an escaped backslash is a literal one: fine
    assert parse_filter('DeviceID.SerialNumber LIKE "abc\\\\\\\\"') == Like(
        "DeviceID.SerialNumber", "abc\\\\", False
    )


def test_a_number_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(FilterError, match="out of range"):
        parse_filter("Device.X.Count > " + "9" * 400 + ".5")
