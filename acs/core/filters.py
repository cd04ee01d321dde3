"""The device filter language, parsed into a small AST (pure: no SQL, no I/O).

    DeviceID.ProductClass = "HG8245" AND Device.DeviceInfo.SoftwareVersion < "V3.2"
    AND tag = "lab" AND NOT (LastInform < "2026-01-01T00:00:00Z" OR ProvisioningCode IS NULL)

Grammar (keywords are case-insensitive; NOT binds tighter than AND, AND
tighter than OR)::

    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | term
    term       := field op value | field ["NOT"] "LIKE" string | field "IS" ["NOT"] "NULL"
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := string | number | "NULL"         (= NULL / != NULL mean IS [NOT] NULL)
    string     := '"' ... '"'                      (backslash escapes the next character)
    number     := -?[0-9]+(.[0-9]+)?

Which literal a field takes:
- text fields (DeviceID.*, SoftwareVersion, HardwareVersion, ProvisioningCode,
  tag) compare text; an unquoted number is kept as the text written, so
  ``DeviceID.OUI = 001122`` means "001122", not 1122;
- time fields (LastInform, LastBoot, LastBootstrap, Registered) take an ISO
  8601 time ("2026-01-31T08:00:00Z"; no offset means UTC) or epoch seconds;
- parameter paths keep numbers as int/float: the store compares them
  numerically for ranges (see acs.store.device_query).

Every error is a FilterError carrying the 0-based character position it
found, so the API can point at it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_LENGTH = 4096
MAX_TERMS = 100
#: parentheses and NOTs nest at most this deep: the parser is recursive, and
#: 4 KB of "(((" would otherwise exhaust Python's stack
MAX_DEPTH = 32

TEXT_FIELDS = frozenset(
    {
        "DeviceID.ID",
        "DeviceID.OUI",
        "DeviceID.ProductClass",
        "DeviceID.SerialNumber",
        "DeviceID.Manufacturer",
        "SoftwareVersion",
        "HardwareVersion",
        "ProvisioningCode",
    }
)
TIME_FIELDS = frozenset({"LastInform", "LastBoot", "LastBootstrap", "Registered"})
TAG_FIELD = "tag"
DEVICE_FIELDS = TEXT_FIELDS | TIME_FIELDS | {TAG_FIELD}
PARAMETER_ROOTS = ("Device.", "InternetGatewayDevice.")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")

_FIELD_HELP = (
    "use DeviceID.ID, DeviceID.OUI, DeviceID.ProductClass, DeviceID.SerialNumber,"
    " DeviceID.Manufacturer, tag, LastInform, LastBoot, LastBootstrap, Registered,"
    " SoftwareVersion, HardwareVersion, ProvisioningCode or a parameter path starting"
    " with Device. or InternetGatewayDevice."
)
# one name per dot-separated segment: letters, digits, '_' and '-' (vendor
# prefixes like X_ACME-COM_); an object path (trailing dot) has no value
_PARAMETER_PATH = re.compile(r"(?:Device|InternetGatewayDevice)(?:\.[A-Za-z0-9_\-]+)+")


class FilterError(ValueError):
    """A filter the parser refuses; ``position`` is a 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"position {position}: {message}")
        self.message = message
        self.position = position


Value = str | int | float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    field: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class Like:
    field: str
    pattern: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    field: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Comparison | Like | IsNull | And | Or | Not

# ASCII classes on purpose: a Unicode digit or space is not part of the language
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.:\-]))
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.:\-]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_KEYWORDS = frozenset({"AND", "OR", "NOT", "LIKE", "IS", "NULL"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, op, paren, word, keyword, end
    text: str
    pos: int


def _describe(tok: _Token) -> str:
    return "the end of the filter" if tok.kind == "end" else repr(tok.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise FilterError('unterminated string: close it with "', pos)
            raise FilterError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            word = match.group()
            if kind == "word" and word.upper() in _KEYWORDS:
                tokens.append(_Token("keyword", word.upper(), pos))
            else:
                tokens.append(_Token(kind, word, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1], flags=re.DOTALL)


def quote(value: str) -> str:
    """``value`` as a string literal of the filter language (what _unquote reads)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_time(value: str | int | float) -> datetime:
    """An ISO 8601 time (UTC when it has no offset) or epoch seconds, as an aware datetime.

    Raises ValueError with a message fit for the operator.
    """
    try:
        if isinstance(value, str):
            when = datetime.fromisoformat(value)
            # in UTC now, as PostgreSQL gets it: 9999-12-31T23:59:59-14:00 is
            # past datetime's range there, and must fail here, not in the query
            return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f'expected an ISO 8601 time such as "2026-01-31T08:00:00Z" or epoch seconds,'
            f" got {value!r}"
        ) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.terms = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "keyword" and tok.text == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Expr:
        expr = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == "paren" and tok.text == ")":
                raise FilterError("')' without a matching '('", tok.pos)
            raise FilterError(f"expected AND, OR or the end, got {_describe(tok)}", tok.pos)
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.keyword("OR"):
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.not_()]
        while self.keyword("AND"):
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nested more than {MAX_DEPTH} levels deep", tok.pos)

    def not_(self) -> Expr:
        tok = self.peek()
        if self.keyword("NOT"):
            self.nest(tok)
            expr: Expr = Not(self.not_())
            self.depth -= 1
            return expr
        if tok.kind == "paren" and tok.text == "(":
            self.take()
            self.nest(tok)
            expr = self.or_()
            self.depth -= 1
            close = self.take()
            if close.kind != "paren" or close.text != ")":
                raise FilterError(
                    f"expected ')' to close the '(' at position {tok.pos}, got {_describe(close)}",
                    close.pos,
                )
            return expr
        return self.term()

    def field(self) -> _Token:
        tok = self.take()
        if tok.kind != "word":
            raise FilterError(f"expected a field name, got {_describe(tok)}", tok.pos)
        name = tok.text
        if name in DEVICE_FIELDS:
            return tok
        if name.startswith(PARAMETER_ROOTS):
            if name.endswith("."):
                raise FilterError(
                    f"{name!r} is an object, not a parameter: name a parameter below it", tok.pos
                )
            if not _PARAMETER_PATH.fullmatch(name):
                raise FilterError(f"malformed parameter path {name!r}", tok.pos)
            return tok
        raise FilterError(f"unknown field {name!r}: {_FIELD_HELP}", tok.pos)

    def term(self) -> Expr:
        tok = self.field()
        field = tok.text
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(f"more than {MAX_TERMS} terms", tok.pos)
        op = self.peek()
        if self.keyword("IS"):
            negated = self.keyword("NOT")
            if not self.keyword("NULL"):
                raise FilterError(
                    f"expected NULL after IS{' NOT' if negated else ''},"
                    f" got {_describe(self.peek())}",
                    self.peek().pos,
                )
            self.only_comparable(field, op, "IS NULL")
            return IsNull(field, negated)
        negated = self.keyword("NOT")
        if self.keyword("LIKE"):
            self.only_comparable(field, op, "LIKE")
            if field in TIME_FIELDS:
                raise FilterError(f"{field} is a time: compare it with < or >, not LIKE", op.pos)
            value = self.take()
            if value.kind != "string":
                raise FilterError(
                    f'LIKE needs a "quoted" pattern, got {_describe(value)}', value.pos
                )
            pattern = _unquote(value.text)
            if (len(pattern) - len(pattern.rstrip("\\"))) % 2:
                # LIKE's escape character, with nothing left to escape: the
                # database refuses the whole query
                raise FilterError(
                    "a LIKE pattern cannot end with a lone backslash (LIKE's escape"
                    ' character); for a literal backslash write "\\\\\\\\"',
                    value.pos,
                )
            return Like(field, pattern, negated)
        if negated:
            raise FilterError(f"expected LIKE after NOT, got {_describe(self.peek())}", op.pos)
        if op.kind != "op":
            raise FilterError(
                f"expected an operator (= != < <= > >= LIKE IS) after {field!r},"
                f" got {_describe(op)}",
                op.pos,
            )
        self.take()
        value = self.take()
        if value.kind == "keyword" and value.text == "NULL" and op.text in ("=", "!="):
            self.only_comparable(field, op, "NULL")
            return IsNull(field, op.text == "!=")
        if field == TAG_FIELD and op.text not in ("=", "!="):
            raise FilterError('tag supports only = and != ("has tag" / "has not tag")', op.pos)
        return Comparison(field, op.text, self.literal(field, op, value))

    def only_comparable(self, field: str, op: _Token, what: str) -> None:
        if field == TAG_FIELD:
            raise FilterError(
                f'tag supports only = and != ("has tag" / "has not tag"), not {what}', op.pos
            )

    def literal(self, field: str, op: _Token, value: _Token) -> Value:
        if value.kind == "string":
            literal: str | int | float = _unquote(value.text)
        elif value.kind == "number":
            if field in TEXT_FIELDS or field == TAG_FIELD:
                literal = value.text  # keeps leading zeros: OUIs and serials are text
            else:
                literal = float(value.text) if "." in value.text else int(value.text)
                if not math.isfinite(literal):  # 400 digits and a fraction: inf
                    raise FilterError(f"number out of range: {value.text[:20]}...", value.pos)
        elif value.kind == "word":
            raise FilterError(
                f"expected a value after {op.text!r}: put text in double quotes,"
                f' e.g. "{value.text}"',
                value.pos,
            )
        else:
            raise FilterError(
                f"expected a value after {op.text!r}, got {_describe(value)}", value.pos
            )
        if field in TIME_FIELDS:
            try:
                parse_time(literal)
            except ValueError as err:
                raise FilterError(f"{field} {err}", value.pos) from None
        return literal


def parse_filter(text: str) -> Expr | None:
    """The AST of a filter; None for an empty one (all devices)."""
    if len(text) > MAX_LENGTH:
        raise FilterError(
            f"filter is {len(text)} characters long; the limit is {MAX_LENGTH}", MAX_LENGTH
        )
    bad = _UNSTORABLE.search(text)
    if bad is not None:
        # PostgreSQL cannot hold these in text: the query would fail, not match
        raise FilterError(f"the character U+{ord(bad.group()):04X} is not allowed", bad.start())
    if not text.strip(" \t\r\n"):
        return None
    return _Parser(text).parse()
