"""Firmware version parsing and ordering: every scheme, real vendor strings, errors, properties."""

from __future__ import annotations

import random
from functools import cmp_to_key

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs.core.versions import (
    MAX_LENGTH,
    SCHEMES,
    IncomparableVersions,
    Version,
    VersionError,
    compare,
    is_newer,
    parse_version,
    validate_scheme,
)

RELEASE_PATTERN = r"R(?P<major>\d+)\.(?P<minor>\d+)-(?P<build>\d+)"


def cmp(a: str, b: str, scheme: str = "auto", pattern: str | None = None) -> int:
    return compare(parse_version(a, scheme, pattern), parse_version(b, scheme, pattern))


def sort_texts(texts: list[str], scheme: str = "auto", pattern: str | None = None) -> list[str]:
    versions = [parse_version(t, scheme, pattern) for t in texts]
    return [v.text for v in sorted(versions, key=cmp_to_key(compare))]


def assert_sorts_to(ordered: list[str], scheme: str = "auto", pattern: str | None = None) -> None:
    """Shuffle a strictly ascending list a few times; sorting must restore it."""
    rng = random.Random(ordered[0])
    for _ in range(5):
        shuffled = ordered[:]
        rng.shuffle(shuffled)
        assert sort_texts(shuffled, scheme, pattern) == ordered
    for older, newer in zip(ordered, ordered[1:], strict=False):
        assert cmp(older, newer, scheme, pattern) == -1, (older, newer)
        assert cmp(newer, older, scheme, pattern) == 1, (newer, older)


def test_the_schemes_listed_are_exactly_the_supported_ones() -> None:
    assert set(SCHEMES) == {"auto", "semver", "numeric", "regex"}
    assert all(isinstance(text, str) and text for text in SCHEMES.values())


# --- auto -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("V1.0.0B05", "V1.0.0B09"),
        ("BD_3UKMF286DV1.0.0B05", "BD_3UKMF286DV1.0.0B09"),
        ("2.4.1-rc2", "2.4.1"),
        ("2.4.1-rc2", "2.4.1-rc10"),
        ("2.4.0", "2.4.1-rc2"),
        ("1.9", "1.10"),
        ("2.0.0-beta1", "2.0.0-rc1"),
        ("1.0.0", "1.0.0B05"),
        ("1.0.0", "1.0.0-build7"),
        ("1.0.0", "1.0.0-p2"),
        ("1.0.0", "1.0.0-foo"),  # unknown suffix: a later build, not a pre-release
        ("1.0.0-b7", "1.0.0B09"),  # 'b' + digits is a build with or without a separator
        ("1.0.0B09", "1.0.0-patch1"),  # build < patch < service pack
        ("1.0.0-patch9", "1.0.0-sp1"),
        ("1.0.0-build7", "1.0.0-build7-p2"),
        ("2.0.0-rc1", "2.0.0-rc1-build5"),
        ("2.0.0-rc1-build5", "2.0.0"),
        ("1.0.0-rc1", "1.0.0-a1"),  # 'a1' is not alpha: unknown suffix, above the release
        # Huawei VRC strings: no dotted core, the rest compares token by token
        ("V300R017C10SPC125", "V300R018C10SPC120"),
        ("V500R019C10SPC310", "V500R019C10SPC386"),
        ("V5R019C10S115", "V5R019C10S125"),
        # ZTE
        ("ZXHN F660 V6.0.10P2N5", "ZXHN F660 V6.0.10P2N7"),
        ("ZXHN F660 V6.0.10P2N7", "ZXHN F660 V6.0.10P3N1"),
        ("V2.30.10P16T3", "V2.30.10P16T10"),
        # TP-Link
        ("3.16.9 Build 160808 Rel.40359n", "3.16.9 Build 161117 Rel.61101n"),
        ("0.9.1 0.1 v0041.0 Build 160224", "1.0.0 Build 20170221"),
        # AVM (leading zeros in components)
        ("154.07.29", "154.07.50"),
        ("154.07.50", "154.7.51"),
        # MikroTik
        ("7.13rc2", "7.13"),
        ("6.49.10", "7.12.1"),
        # OpenWrt-style with a revision
        ("OpenWrt 21.02.3 r16554-1d4dc6e8a0", "OpenWrt 22.03.5 r20134-5f15225c1e"),
        # Python-style dev release
        ("3.0.0.dev3", "3.0.0.dev12"),
        ("3.0.0.dev12", "3.0.0a1"),
    ],
)
def test_auto_orders_vendor_strings(older: str, newer: str) -> None:
    assert cmp(older, newer) == -1
    assert cmp(newer, older) == 1
    assert is_newer(parse_version(newer), parse_version(older))
    assert not is_newer(parse_version(older), parse_version(newer))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.2", "1.2.0"),
        ("1.2", "1.2.0.0"),
        ("V1.0.0B05", "1.0.0b05"),
        ("v1.0.0B05", "V1.0.0-B5"),
        ("2.4.1-RC2", "2.4.1rc2"),
        ("2.4.1-rc.2", "2.4.1_rc2"),
        ("2.4.1-rc", "2.4.1-rc0"),
        ("1.0.0-FOO", "1.0.0-foo"),
        ("  1.2.3  ", "1.2.3"),
        ("BD_3UKMF286DV1.0.0B09", "bd_3ukmf286dV1.0.0B09"),  # prefixes compare case-insensitively
    ],
)
def test_auto_equal_versions(a: str, b: str) -> None:
    assert cmp(a, b) == 0
    assert cmp(b, a) == 0
    assert not is_newer(parse_version(a), parse_version(b))


def test_auto_full_pre_release_ladder() -> None:
    assert_sorts_to(
        [
            "2.0.0-dev",
            "2.0.0-dev2",
            "2.0.0-alpha",
            "2.0.0-alpha3",
            "2.0.0-beta1",
            "2.0.0-beta3",
            "2.0.0-pre",
            "2.0.0-rc1",
            "2.0.0-rc2",
            "2.0.0-rc10",
            "2.0.0",
            "2.0.0-foo",
            "2.0.0B05",
            "2.0.0B09",
            "2.0.0-p1",
            "2.0.0-sp1",
            "2.0.1-rc1",
            "2.0.1",
            "2.1",
            "10.0",
        ]
    )


def test_auto_sorts_a_shuffled_product_line() -> None:
    assert_sorts_to(
        [
            "BD_3UKMF286DV1.0.0B01",
            "BD_3UKMF286DV1.0.0B05",
            "BD_3UKMF286DV1.0.0B09",
            "BD_3UKMF286DV1.0.0B10",
            "BD_3UKMF286DV1.0.1B02",
            "BD_3UKMF286DV1.1.0B01",
            "BD_3UKMF286DV2.0.0B01",
        ]
    )


@pytest.mark.parametrize(
    ("text", "prefix", "key_core", "display"),
    [
        (
            "BD_3UKMF286DV1.0.0B09",
            "BD_3UKMF286D",
            (1,),
            "1.0.0 build 9 (prefix BD_3UKMF286D)",
        ),
        ("V1.0.0B05", "", (1,), "1.0.0 build 5"),
        ("2.4.1-rc2", "", (2, 4, 1), "2.4.1 rc 2"),
        ("2.0.0-beta", "", (2,), "2.0.0 beta"),
        (
            "ZXHN F660 V6.0.10P2N5",
            "ZXHN F660",
            (6, 0, 10),
            "6.0.10 patch 2 + 'N5' (prefix ZXHN F660)",
        ),
        ("HG8245H_V3.1.10-sp2", "HG8245H", (3, 1, 10), "3.1.10 service pack 2 (prefix HG8245H)"),
        ("V300R018C10SPC120", "", (300,), "300 + 'R018C10SPC120'"),
        ("HG8245HV300R018C10SPC120", "HG8245H", (300,), "300 + 'R018C10SPC120' (prefix HG8245H)"),
        ("BD_3UKMF286DV2", "BD_3UKMF286D", (2,), "2 (prefix BD_3UKMF286D)"),
        ("0.dev1", "", (), "0 dev 1"),
        ("abc123", "abc", (123,), "123 (prefix abc)"),
        ("firmware-12", "firmware", (12,), "12 (prefix firmware)"),
        ("1.10", "", (1, 10), "1.10"),
    ],
)
def test_auto_parses_prefix_core_and_markers(
    text: str, prefix: str, key_core: tuple[int, ...], display: str
) -> None:
    version = parse_version(text)
    assert version.text == text
    assert version.scheme == "auto"
    assert version.prefix == prefix
    assert version.key[0] == key_core
    assert version.display() == display


def test_mf286_build_number_is_in_the_key() -> None:
    version = parse_version("BD_3UKMF286DV1.0.0B09")
    assert version.key == ((1,), (5, 0), ((0, 9),), ())


def test_different_product_lines_are_incomparable() -> None:
    a = parse_version("BD_3UKMF286DV1.0.0B09")
    b = parse_version("BD_XYZV1.0.0B09")
    with pytest.raises(IncomparableVersions, match="different product lines"):
        compare(a, b)
    with pytest.raises(IncomparableVersions):
        is_newer(b, a)


def test_an_empty_prefix_compares_with_any_prefix() -> None:
    bare = parse_version("V1.0.0B05")
    full = parse_version("BD_3UKMF286DV1.0.0B09")
    other = parse_version("BD_XYZV1.0.0B01")
    assert compare(bare, full) == -1
    assert compare(bare, other) == 1
    assert is_newer(full, bare)


def test_different_schemes_are_incomparable() -> None:
    with pytest.raises(IncomparableVersions, match="scheme"):
        compare(parse_version("1.2.3"), parse_version("1.2.3", "semver"))
    with pytest.raises(IncomparableVersions, match="pattern"):
        compare(
            parse_version("R1.2-3", "regex", RELEASE_PATTERN),
            parse_version("R1.2-3", "regex", r"R(?P<major>\d+)"),
        )


# --- semver -----------------------------------------------------------------


def test_semver_precedence_from_the_spec() -> None:
    assert_sorts_to(
        [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ],
        "semver",
    )


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0.0-1", "1.0.0-alpha"),  # numeric identifiers rank below alphanumeric ones
        ("1.0.0-2", "1.0.0-10"),
        ("1.0.0-Beta", "1.0.0-alpha"),  # ASCII order: uppercase before lowercase
        ("1.0.0-alpha.1", "1.0.0-alpha-1"),  # "alpha" < "alpha-1" as ASCII text
        ("v1.9.0", "v1.10.0"),
        ("0.9.9", "V1.0.0-0"),
    ],
)
def test_semver_orders(older: str, newer: str) -> None:
    assert cmp(older, newer, "semver") == -1
    assert cmp(newer, older, "semver") == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.0.0+20130313144700", "1.0.0"),
        ("1.0.0-beta+exp.sha.5114f85", "1.0.0-beta+other"),
        ("v1.2.3", "1.2.3"),
    ],
)
def test_semver_ignores_build_metadata_and_the_v(a: str, b: str) -> None:
    assert cmp(a, b, "semver") == 0


def test_semver_display() -> None:
    version = parse_version("v1.0.0-rc.1+b7", "semver")
    assert version.prefix == ""
    assert version.display() == "1.0.0 pre-release rc.1 (build metadata b7 ignored)"


@pytest.mark.parametrize(
    "text",
    [
        "1.2",
        "1",
        "01.2.3",
        "1.02.3",
        "1.2.3-",
        "1.2.3-01",
        "1.2.3+",
        "1.2.3-rc..1",
        "1.2.3.4",
        "BD_V1.2.3",
        "1.2.3 build 5",
        "V1.0.0B05",
    ],
)
def test_semver_rejects_non_semver(text: str) -> None:
    with pytest.raises(VersionError, match="Semantic Version"):
        parse_version(text, "semver")


# --- numeric ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("FW 1.2.3-rc1", "1.2.3", 0),
        ("R1.2.3 build 9", "1.2.3", 0),
        ("V1.0.0B05", "V1.0.0B09", 0),
        ("1.2", "1.2.0", 0),
        ("1.9", "1.10", -1),
        ("2.0-beta", "1.99", 1),
        ("V300R018C10SPC120", "V300R017C10SPC125", 0),
    ],
)
def test_numeric_compares_only_the_core(a: str, b: str, expected: int) -> None:
    assert cmp(a, b, "numeric") == expected
    assert cmp(b, a, "numeric") == -expected


def test_numeric_keeps_the_prefix_for_comparability() -> None:
    a = parse_version("BD_3UKMF286DV1.0.0B09", "numeric")
    assert a.prefix == "BD_3UKMF286D"
    assert a.display() == "1.0.0 (prefix BD_3UKMF286D)"
    with pytest.raises(IncomparableVersions):
        compare(a, parse_version("BD_XYZV1.0.0B09", "numeric"))
    assert compare(a, parse_version("1.0.1", "numeric")) == -1


def test_numeric_sorts() -> None:
    assert_sorts_to(["0.9", "1.0-rc1 build 77", "1.0.1", "1.2", "1.10", "2"], "numeric")


# --- regex ------------------------------------------------------------------


def test_regex_orders_by_groups_in_pattern_order() -> None:
    assert_sorts_to(["R1.2-3", "R1.2-10", "R1.10-1", "R2.0-0", "R10.0-0"], "regex", RELEASE_PATTERN)


def test_regex_parses() -> None:
    version = parse_version("HG8245-R12.3-45", "regex", RELEASE_PATTERN)
    assert version.prefix == "HG8245"
    assert version.pattern == RELEASE_PATTERN
    assert version.display() == "major=12 minor=3 build=45 (prefix HG8245)"


def test_regex_group_order_is_appearance_not_name() -> None:
    # 'b' appears first, so it is the most significant part
    pattern = r"(?P<b>\d+)x(?P<a>\d+)"
    assert cmp("2x1", "1x9", "regex", pattern) == 1


def test_regex_missing_optional_group_ranks_lowest_and_text_ignores_case() -> None:
    pattern = r"(?P<major>\d+)(?:-(?P<tag>\w+))?"
    assert_sorts_to(["5", "5-abc", "5-zz", "5-7", "6"], "regex", pattern)
    assert cmp("5-ABC", "5-abc", "regex", pattern) == 0
    assert parse_version("5", "regex", pattern).display() == "major=5 tag=-"


def test_regex_non_matching_text_names_the_pattern() -> None:
    with pytest.raises(VersionError, match=r"R\(\?P<major>"):
        parse_version("V1.2.3", "regex", RELEASE_PATTERN)


# --- validation and errors --------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "pattern", "reason"),
    [
        ("lexical", None, "unknown version scheme 'lexical'; use one of 'auto'"),
        ("AUTO", None, "unknown version scheme"),
        ("regex", None, "needs a pattern with named groups"),
        ("regex", "", "needs a pattern with named groups"),
        ("regex", "(", "not a valid regex"),
        ("regex", "a{2,1}", "not a valid regex"),
        ("regex", r"(\d+)\.(\d+)", "has no named group"),
        ("regex", "(?P<x>a)" * 100, "at most 512"),
        ("auto", r"(?P<x>\d+)", "only used with scheme 'regex'"),
        ("semver", "", "only used with scheme 'regex'"),
    ],
)
def test_validate_scheme_explains(scheme: str, pattern: str | None, reason: str) -> None:
    with pytest.raises(VersionError) as err:
        validate_scheme(scheme, pattern)
    assert reason in str(err.value)
    with pytest.raises(VersionError):
        parse_version("1.2.3", scheme, pattern)


@pytest.mark.parametrize(("scheme", "pattern"), [(s, None) for s in SCHEMES if s != "regex"])
def test_validate_scheme_accepts(scheme: str, pattern: str | None) -> None:
    validate_scheme(scheme, pattern)
    validate_scheme("regex", RELEASE_PATTERN)


@pytest.mark.parametrize(
    ("text", "scheme", "reason"),
    [
        ("", "auto", "empty"),
        ("   \t\n", "auto", "empty"),
        ("1" * (MAX_LENGTH + 1), "auto", "at most 128"),
        ("abc", "auto", "no number"),
        ("V.R.C", "auto", "no number"),
        ("abc", "numeric", "no number"),
        ("", "semver", "empty"),
        ("x" * 200, "semver", "at most 128"),
    ],
)
def test_unusable_strings(text: str, scheme: str, reason: str) -> None:
    with pytest.raises(VersionError, match=reason):
        parse_version(text, scheme)


def test_exactly_max_length_is_accepted() -> None:
    assert parse_version("1." + "1" * (MAX_LENGTH - 2)).key[0] == (1, int("1" * (MAX_LENGTH - 2)))


def test_non_text_is_a_version_error() -> None:
    with pytest.raises(VersionError, match="must be text"):
        parse_version(None)  # type: ignore[arg-type]


def test_version_is_immutable_and_hashable() -> None:
    version = parse_version("2.4.1-rc2")
    assert hash(version) == hash(parse_version("2.4.1-rc2"))
    with pytest.raises(AttributeError):
        version.text = "3"  # type: ignore[misc]


def test_errors_are_value_errors() -> None:
    assert issubclass(VersionError, ValueError)
    assert issubclass(IncomparableVersions, ValueError)


# --- properties -------------------------------------------------------------


@settings(max_examples=300)
@given(text=st.text(max_size=150), scheme=st.sampled_from(["auto", "semver", "numeric"]))
def test_arbitrary_text_only_raises_version_error(text: str, scheme: str) -> None:
    try:
        version = parse_version(text, scheme)
    except VersionError:
        return
    assert isinstance(version, Version)
    assert isinstance(version.display(), str)
    assert compare(version, version) == 0


@settings(max_examples=200)
@given(text=st.text(max_size=60), pattern=st.text(max_size=30))
def test_arbitrary_patterns_only_raise_version_error(text: str, pattern: str) -> None:
    try:
        version = parse_version(text, "regex", "(?P<g>" + pattern + ")")
    except VersionError:
        return
    assert compare(version, version) == 0
    assert isinstance(version.display(), str)


@settings(max_examples=200)
@given(a=st.text(max_size=40), b=st.text(max_size=40))
def test_arbitrary_pairs_compare_or_refuse(a: str, b: str) -> None:
    try:
        va, vb = parse_version(a), parse_version(b)
    except VersionError:
        return
    try:
        result = compare(va, vb)
    except IncomparableVersions:
        with pytest.raises(IncomparableVersions):
            compare(vb, va)
        return
    assert result in (-1, 0, 1)
    assert compare(vb, va) == -result


SUFFIXES = ["", "-rc1", "-rc10", "rc2", "-beta2", "-alpha", ".dev1", "B05", "B9", "-build3"]
SUFFIXES += ["p2", "-sp1", "-foo", "-foo2", "-2", "_x.1", "-rc1-build2", " Build 7 Rel.3n"]


@st.composite
def dotted_versions(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["", "V", "v", "BD_3UKMF286DV", "bd_3ukmf286d v"]))
    parts = draw(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=4))
    return prefix + ".".join(map(str, parts)) + draw(st.sampled_from(SUFFIXES))


@st.composite
def semvers(draw: st.DrawFn) -> str:
    core = ".".join(str(draw(st.integers(0, 12))) for _ in range(3))
    ident = st.one_of(
        st.integers(0, 30).map(str), st.sampled_from(["alpha", "beta", "rc", "Rc", "x-y", "0a"])
    )
    pre = draw(st.lists(ident, max_size=3))
    build = draw(st.sampled_from(["", "+b1", "+exp.sha.5114f85"]))
    return core + ("-" + ".".join(pre) if pre else "") + build


@settings(max_examples=200)
@given(texts=st.lists(dotted_versions(), min_size=2, max_size=12))
def test_auto_compare_is_antisymmetric_and_consistent_with_sorting(texts: list[str]) -> None:
    versions = [parse_version(t) for t in texts]
    for a in versions:
        for b in versions:
            assert compare(a, b) == -compare(b, a)
    ordered = sorted(versions, key=cmp_to_key(compare))
    # consistent with a total order: everything later in the sorted list is >=
    for i, a in enumerate(ordered):
        for b in ordered[i:]:
            assert compare(a, b) <= 0
    # sorting from another starting order gives the same sequence up to equal elements
    again = sorted(reversed(versions), key=cmp_to_key(compare))
    assert all(compare(x, y) == 0 for x, y in zip(again, ordered, strict=True))


@settings(max_examples=200)
@given(texts=st.lists(semvers(), min_size=2, max_size=12))
def test_semver_compare_is_antisymmetric_and_consistent_with_sorting(texts: list[str]) -> None:
    versions = [parse_version(t, "semver") for t in texts]
    for a in versions:
        for b in versions:
            assert compare(a, b) == -compare(b, a)
    ordered = sorted(versions, key=cmp_to_key(compare))
    for i, a in enumerate(ordered):
        for b in ordered[i:]:
            assert compare(a, b) <= 0


@given(parts=st.lists(st.integers(0, 10**6), min_size=1, max_size=6), zeros=st.integers(0, 3))
def test_trailing_zero_components_are_insignificant(parts: list[int], zeros: int) -> None:
    text = ".".join(map(str, parts))
    padded = text + ".0" * zeros
    for scheme in ("auto", "numeric"):
        assert cmp(text, padded, scheme) == 0


@given(
    a=st.lists(st.integers(0, 10**4), min_size=2, max_size=5),
    b=st.lists(st.integers(0, 10**4), min_size=2, max_size=5),
)
def test_plain_dotted_versions_compare_like_integer_lists(a: list[int], b: list[int]) -> None:
    def trimmed(xs: list[int]) -> list[int]:
        while xs and xs[-1] == 0:
            xs = xs[:-1]
        return xs

    expected = (trimmed(a) > trimmed(b)) - (trimmed(a) < trimmed(b))
    assert cmp(".".join(map(str, a)), ".".join(map(str, b))) == expected
