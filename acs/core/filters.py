"""The device filter language, parsed into a small AST (pure; no SQL here).

    DeviceID.ProductClass = "HG8245" AND Device.DeviceInfo.SoftwareVersion < "V3.2"
    AND tag = "lab" AND NOT (LastInform < "2026-01-01T00:00:00Z" OR ProvisioningCode IS NULL)

Operators: = != < <= > >= LIKE, NOT LIKE, IS NULL, IS NOT NULL, AND, OR, NOT
and parentheses (NOT binds tighter than AND, AND tighter than OR). Values are
"double-quoted strings" (backslash escapes \\" and \\\\) or numbers. Keywords
are case-insensitive. Every error names the character position it found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LENGTH = 4096
MAX_TERMS = 100

# Fields that are device columns; the rest are parameter paths.
DEVICE_FIELDS = frozenset(
    {
        "DeviceID.ID",
        "DeviceID.OUI",
        "DeviceID.ProductClass",
        "DeviceID.SerialNumber",
        "DeviceID.Manufacturer",
        "tag",
        "LastInform",
        "LastBoot",
        "LastBootstrap",
        "Registered",
        "SoftwareVersion",
        "HardwareVersion",
        "ProvisioningCode",
    }
)
PARAMETER_ROOTS = ("Device.", "InternetGatewayDevice.")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")


class FilterError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"position {position}: {message}")
        self.message = message
        self.position = position


Value = str | int | float


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

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][\w.{}\-]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IS", "NULL"}


@dataclass(slots=True)
class _Token:
    kind: str  # string, number, op, paren, word, keyword, end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise FilterError("unterminated string", pos)
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


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.terms = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
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
            raise FilterError(f"expected AND, OR or the end, got {tok.text!r}", tok.pos)
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

    def not_(self) -> Expr:
        if self.keyword("NOT"):
            return Not(self.not_())
        return self.primary()

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "paren" and tok.text == "(":
            self.take()
            expr = self.or_()
            close = self.take()
            if close.kind != "paren" or close.text != ")":
                raise FilterError(f"expected ')' to close the '(' at {tok.pos}", close.pos)
            return expr
        return self.comparison()

    def comparison(self) -> Expr:
        tok = self.take()
        if tok.kind != "word":
            what = "the end" if tok.kind == "end" else repr(tok.text)
            raise FilterError(f"expected a field name, got {what}", tok.pos)
        field = tok.text
        if field not in DEVICE_FIELDS and not field.startswith(PARAMETER_ROOTS):
            raise FilterError(
                f"unknown field {field!r}: use DeviceID.*, tag, LastInform, LastBoot,"
                " LastBootstrap, Registered, SoftwareVersion, HardwareVersion, ProvisioningCode"
                " or a parameter path starting with Device. or InternetGatewayDevice.",
                tok.pos,
            )
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(f"more than {MAX_TERMS} terms", tok.pos)
        op = self.peek()
        if self.keyword("IS"):
            negated = self.keyword("NOT")
            if not self.keyword("NULL"):
                raise FilterError("expected NULL after IS", self.peek().pos)
            return IsNull(field, negated)
        negated = self.keyword("NOT")
        if self.keyword("LIKE"):
            value = self.take()
            if value.kind != "string":
                raise FilterError('LIKE needs a "quoted" pattern', value.pos)
            return Like(field, _unquote(value.text), negated)
        if negated:
            raise FilterError("expected LIKE after NOT", self.peek().pos)
        if op.kind != "op":
            raise FilterError(f"expected an operator after {field!r}", op.pos)
        self.take()
        value = self.take()
        if value.kind == "string":
            literal: Value = _unquote(value.text)
        elif value.kind == "number":
            literal = float(value.text) if "." in value.text else int(value.text)
        else:
            raise FilterError(f"expected a value after {op.text!r}", value.pos)
        if field == "tag" and op.text not in ("=", "!="):
            raise FilterError("tag supports only = and !=", op.pos)
        return Comparison(field, op.text, literal)


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_filter(text: str) -> Expr | None:
    """The AST of a filter; None for an empty one (all devices)."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"filter longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        return None
    return _Parser(text).parse()
