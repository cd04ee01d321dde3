"""Firmware version strings, parsed and compared per product (pure: no I/O).

CPEs report ``SoftwareVersion`` in whatever shape their vendor likes
("BD_3UKMF286DV1.0.0B09", "V300R018C10SPC120", "2.4.1-rc2"), and plain text
order answers the questions a firmware campaign asks wrongly: "1.10" sorts
before "1.9" and "2.4.1-rc2" after "2.4.1". Acting on a wrong answer downgrades
or re-flashes devices in the field, so every comparison goes through a scheme
that knows what the parts of the string mean, and two versions from different
product lines refuse to compare instead of producing a confident guess.

Schemes (a product picks one; see ``SCHEMES``):

- ``auto``: the vendor-string heuristic below; the default because most
  products never get configured.
- ``semver``: strict Semantic Versioning 2.0.0 precedence.
- ``numeric``: only the dotted numbers count, for vendors whose suffixes are
  noise (build hosts, dates, branch names).
- ``regex``: an operator-supplied pattern for shapes nothing else fits.

How ``auto`` reads a string, and the choices made where vendors disagree:

- The *core* is the first run of dot-separated numbers (``V1.0.0``); when
  nothing is dotted, the first number, except that digits glued to letters
  give way to a later number introduced by ``V``, because they are part of a
  model name (Huawei ``HG8245HV300R018C10SPC120``: the core is 300).
  Components compare as integers and trailing zeros are dropped, because
  "1.2" and "1.2.0" are the same firmware written twice.
- The *prefix* is the text before the core, minus the ``V`` that introduces
  it and any trailing separators. It names the product line; two versions with
  different non-empty prefixes (ignoring case, which vendors do not keep
  stable between releases) are incomparable. An empty prefix compares with
  anything, because some devices report only the bare version of an image the
  catalog lists with its full name.
- Right after the core, ``dev`` < ``alpha`` < ``beta`` < ``pre`` < ``rc``
  rank *below* the release with the same core, each with an optional number
  compared numerically ("rc10" > "rc2"). Only the spelled-out words count:
  "a1" is not alpha. Markers count only in this position, where vendors put
  them; further along they are ordinary tail text.
- ``B05``/``b05`` (with or without a separator), ``build7``, ``p2``/``patch2``
  and ``sp1`` rank *above* the bare release. A lone ``b`` with digits is a
  build, not a beta: that is how Huawei, ZTE and MF286-style strings use it
  ("V1.0.0B09" is build 9 of 1.0.0). When kinds differ, build < patch <
  service pack, since a patch or service pack is applied on top of a build.
- Whatever text remains is compared token by token (digit runs as integers
  and above letter runs, letter runs case-insensitively), and *any* leftover
  text ranks above none: a release with an unrecognised suffix is treated as
  a later build of that release rather than a pre-release, because vendors
  mark pre-releases explicitly far more often than they mark respins.

Keys are tuples whose positions always hold the same kind of value (numbers
are wrapped as ``(kind, number, text)`` triples), so ordering within one scheme
is total and never hits a ``TypeError`` between ``int`` and ``str``.
"""

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "MAX_LENGTH",
    "MAX_PATTERN_LENGTH",
    "SCHEMES",
    "IncomparableVersions",
    "Version",
    "VersionError",
    "compare",
    "is_newer",
    "parse_version",
    "validate_scheme",
]

# Longer than any real SoftwareVersion; the cap keeps hostile Inform values
# (and a slow operator-supplied regex) from costing more than a glance.
MAX_LENGTH = 128
MAX_PATTERN_LENGTH = 512

SCHEMES: dict[str, str] = {
    "auto": (
        "vendor strings such as 'BD_3UKMF286DV1.0.0B09': dotted numeric core, "
        "dev/alpha/beta/pre/rc below and build/patch markers above the release"
    ),
    "semver": "Semantic Versioning 2.0.0 precedence; optional leading 'v'; build metadata ignored",
    "numeric": "only the dotted numeric core is compared; any other text is ignored",
    "regex": (
        "a pattern with named groups; group values compared in pattern order, "
        "all-digit values as numbers, others case-insensitively"
    ),
}


class VersionError(ValueError):
    """A version string, scheme or pattern that cannot be used; the message says why."""


class IncomparableVersions(ValueError):
    """Two versions that belong to different product lines or schemes."""


Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version. Order versions with :func:`compare`, not ``==``/``<``:
    dataclass equality also looks at the text, and "1.2" equals "1.2.0"."""

    text: str
    scheme: str
    prefix: str
    key: Key
    # Two regex versions are only comparable when parsed by the same pattern,
    # so the pattern travels with the version.
    pattern: str | None = field(default=None, kw_only=True)

    def display(self) -> str:
        """A summary for people, e.g. "1.0.0 build 9 (prefix BD_3UKMF286D)"."""
        try:
            return _describe(self)
        except VersionError:
            # Only reachable for a Version built by hand from an unparseable text.
            return self.text


# --- auto / numeric --------------------------------------------------------

_DOTTED_CORE = re.compile(r"[Vv]?(\d+(?:\.\d+)+)", re.ASCII)
_BARE_CORE = re.compile(r"[Vv]?(\d+)", re.ASCII)
_MARKED_CORE = re.compile(r"[Vv](\d+)", re.ASCII)
# Non-ASCII digits are deliberately neither numbers nor letters here: int()
# accepts some of them and str.isdigit() others, and no vendor uses them.
_TOKEN = re.compile(r"(?P<num>[0-9]+)|(?P<word>[^\W\d_]+)")
_PREFIX_SEPARATORS = " \t-_./:;,"

_PRE_RANK = {"dev": 0, "alpha": 1, "beta": 2, "pre": 3, "rc": 4}
_RELEASE_RANK = len(_PRE_RANK)
_POST_KIND = {"b": 0, "build": 0, "p": 1, "patch": 1, "sp": 2}
_POST_NAMES = ("build", "patch", "service pack")

# Kind tags inside tail/regex triples: missing < text < number.
_MISSING, _TEXT, _NUMBER = 0, 1, 2


class _Token(NamedTuple):
    start: int
    number: int | None
    word: str


class _AutoParts(NamedTuple):
    prefix: str
    core_text: str
    core: tuple[int, ...]
    stage: tuple[int, int]
    stage_label: str
    posts: tuple[tuple[int, int], ...]
    tail_text: str
    tail: tuple[tuple[int, int, str], ...]


def _trim(numbers: tuple[int, ...]) -> tuple[int, ...]:
    end = len(numbers)
    while end and numbers[end - 1] == 0:
        end -= 1
    return numbers[:end]


def _undotted_core(text: str) -> re.Match[str] | None:
    bare = _BARE_CORE.search(text)
    if bare is None:
        return None
    marked = _MARKED_CORE.search(text)
    if marked is None or marked.start() <= bare.start():
        return bare
    # Digits glued to letters belong to a model name ("HG8245H", "3UKMF286D"),
    # so a later number introduced by 'V' is the version; a standalone first
    # number ("0.dev1") stays the core.
    start, end = bare.span(1)
    glued = (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())
    return marked if glued else bare


def _find_core(text: str) -> tuple[str, str, str]:
    """(prefix, core text, rest) of a string, for the auto and numeric schemes."""
    match = _DOTTED_CORE.search(text) or _undotted_core(text)
    if match is None:
        raise VersionError(
            f"no number in version {text!r}; expected something like 'V1.2.3' or '1.2.3-rc1'"
        )
    prefix = text[: match.start()].rstrip(_PREFIX_SEPARATORS)
    return prefix, match.group(1), text[match.end() :]


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    for m in _TOKEN.finditer(text):
        num = m.group("num")
        if num is not None:
            found.append(_Token(m.start(), int(num), ""))
        else:
            found.append(_Token(m.start(), None, m.group().casefold()))
    return found


def _parse_auto(text: str) -> _AutoParts:
    prefix, core_text, rest = _find_core(text)
    core = _trim(tuple(int(part) for part in core_text.split(".")))
    tokens = _tokens(rest)
    i = 0

    stage = (_RELEASE_RANK, 0)
    stage_label = ""
    if tokens and tokens[0].word in _PRE_RANK:
        word = tokens[0].word
        i = 1
        number = 0
        stage_label = word
        following = tokens[i].number if i < len(tokens) else None
        if following is not None:
            number = following
            stage_label = f"{word} {number}"
            i += 1
        stage = (_PRE_RANK[word], number)

    posts: list[tuple[int, int]] = []
    while i + 1 < len(tokens) and tokens[i].word in _POST_KIND:
        number_token = tokens[i + 1].number
        if number_token is None:
            break
        posts.append((_POST_KIND[tokens[i].word], number_token))
        i += 2

    tail_tokens = tokens[i:]
    tail_text = rest[tail_tokens[0].start :] if tail_tokens else ""
    tail = tuple(
        (_NUMBER, t.number, "") if t.number is not None else (_TEXT, 0, t.word) for t in tail_tokens
    )
    return _AutoParts(prefix, core_text, core, stage, stage_label, tuple(posts), tail_text, tail)


def _auto_key(parts: _AutoParts) -> Key:
    return (parts.core, parts.stage, parts.posts, parts.tail)


# --- semver -----------------------------------------------------------------

_NUM_ID = r"(?:0|[1-9][0-9]*)"
_PRE_ID = rf"(?:{_NUM_ID}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"[vV]?(?P<core>(?P<major>{_NUM_ID})\.(?P<minor>{_NUM_ID})\.(?P<patch>{_NUM_ID}))"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


def _match_semver(text: str) -> re.Match[str]:
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise VersionError(
            f"{text!r} is not a Semantic Version: expected MAJOR.MINOR.PATCH with optional "
            "'-prerelease' and '+build' (e.g. '2.4.1-rc.2+b7'), no leading zeros; "
            "use scheme 'auto' for vendor strings"
        )
    return match


def _semver_key(match: re.Match[str]) -> Key:
    core = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    pre = match["pre"]
    if pre is None:
        # A release outranks every pre-release of the same core (spec item 11.3).
        return (core, 1, ())
    # Numeric identifiers rank below alphanumeric ones; alphanumerics compare
    # in ASCII order, case-sensitively, exactly as the spec says (item 11.4).
    ids = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return (core, 0, ids)


# --- regex ------------------------------------------------------------------


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise VersionError(
            f"version pattern is {len(pattern)} characters long; at most "
            f"{MAX_PATTERN_LENGTH} are allowed"
        )
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as err:
        raise VersionError(f"version pattern {pattern!r} is not a valid regex: {err}") from None
    if not compiled.groupindex:
        raise VersionError(
            f"version pattern {pattern!r} has no named group; name the parts to compare, "
            r"e.g. 'R(?P<major>\d+)\.(?P<minor>\d+)-(?P<build>\d+)'"
        )
    return compiled


def _group_names(compiled: re.Pattern[str]) -> list[str]:
    # Group numbers follow the opening parentheses, i.e. the order of
    # appearance, which is the significance order an operator writes.
    return sorted(compiled.groupindex, key=compiled.groupindex.__getitem__)


def _regex_value(value: str | None) -> tuple[int, int, str]:
    if value is None:
        return (_MISSING, 0, "")
    if value.isascii() and value.isdigit():
        return (_NUMBER, int(value), "")
    return (_TEXT, 0, value.casefold())


def _match_regex(text: str, pattern: str) -> re.Match[str]:
    match = _compile(pattern).search(text)
    if match is None:
        raise VersionError(f"version {text!r} does not match the pattern {pattern!r}")
    return match


# --- public API -------------------------------------------------------------


def validate_scheme(scheme: str, pattern: str | None) -> None:
    """Check a product's scheme settings before they are stored; raises VersionError."""
    if scheme not in SCHEMES:
        known = ", ".join(repr(name) for name in SCHEMES)
        raise VersionError(f"unknown version scheme {scheme!r}; use one of {known}")
    if scheme == "regex":
        if not pattern:
            raise VersionError(
                "scheme 'regex' needs a pattern with named groups, "
                r"e.g. 'R(?P<major>\d+)\.(?P<minor>\d+)-(?P<build>\d+)'"
            )
        _compile(pattern)
    elif pattern is not None:
        # Silently ignoring it would let an operator believe the pattern is in use.
        raise VersionError(
            f"a pattern is only used with scheme 'regex', not {scheme!r}; "
            "drop the pattern or switch the scheme to 'regex'"
        )


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise VersionError(f"a version must be text, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise VersionError("the version is empty")
    if len(text) > MAX_LENGTH:
        raise VersionError(
            f"version {text[:40]!r}... is {len(text)} characters long; "
            f"at most {MAX_LENGTH} are allowed"
        )
    return text


def parse_version(text: str, scheme: str = "auto", pattern: str | None = None) -> Version:
    """Parse ``text`` under ``scheme``; raises VersionError and nothing else."""
    validate_scheme(scheme, pattern)
    text = _clean(text)
    if scheme == "auto":
        parts = _parse_auto(text)
        return Version(text, scheme, parts.prefix, _auto_key(parts))
    if scheme == "numeric":
        prefix, core_text, _ = _find_core(text)
        core = _trim(tuple(int(part) for part in core_text.split(".")))
        return Version(text, scheme, prefix, (core,))
    if scheme == "semver":
        return Version(text, scheme, "", _semver_key(_match_semver(text)))
    assert pattern is not None  # validate_scheme guarantees it for "regex"
    match = _match_regex(text, pattern)
    key = tuple(_regex_value(match.group(name)) for name in _group_names(match.re))
    prefix = text[: match.start()].rstrip(_PREFIX_SEPARATORS)
    return Version(text, scheme, prefix, key, pattern=pattern)


def compare(a: Version, b: Version) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as, or newer than ``b``.

    Raises IncomparableVersions for different schemes (or regex patterns) and
    for different non-empty prefixes, i.e. different product lines.
    """
    if a.scheme != b.scheme:
        raise IncomparableVersions(
            f"{a.text!r} uses scheme {a.scheme!r} and {b.text!r} uses {b.scheme!r}"
        )
    if a.pattern != b.pattern:
        raise IncomparableVersions(f"{a.text!r} and {b.text!r} were parsed with different patterns")
    # Case is presentation: vendors are not consistent about it between releases.
    if a.prefix and b.prefix and a.prefix.casefold() != b.prefix.casefold():
        raise IncomparableVersions(
            f"{a.text!r} and {b.text!r} belong to different product lines "
            f"({a.prefix!r} vs {b.prefix!r})"
        )
    return (a.key > b.key) - (a.key < b.key)


def is_newer(candidate: Version, installed: Version) -> bool:
    """Whether ``candidate`` is strictly newer; raises IncomparableVersions."""
    return compare(candidate, installed) > 0


def _with_prefix(summary: str, prefix: str) -> str:
    return f"{summary} (prefix {prefix})" if prefix else summary


def _describe(version: Version) -> str:
    text = version.text
    if version.scheme == "auto":
        parts = _parse_auto(text)
        words = [parts.core_text]
        if parts.stage_label:
            words.append(parts.stage_label)
        words.extend(f"{_POST_NAMES[kind]} {number}" for kind, number in parts.posts)
        if parts.tail_text:
            words.append(f"+ {parts.tail_text!r}")
        return _with_prefix(" ".join(words), parts.prefix)
    if version.scheme == "numeric":
        prefix, core_text, _ = _find_core(text)
        return _with_prefix(core_text, prefix)
    if version.scheme == "semver":
        match = _match_semver(text)
        words = [match["core"]]
        if match["pre"]:
            words.append(f"pre-release {match['pre']}")
        if match["build"]:
            words.append(f"(build metadata {match['build']} ignored)")
        return " ".join(words)
    if version.scheme == "regex" and version.pattern is not None:
        match = _match_regex(text, version.pattern)
        fields = [f"{name}={match.group(name) or '-'}" for name in _group_names(match.re)]
        return _with_prefix(" ".join(fields), version.prefix)
    return text
