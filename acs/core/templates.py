"""Value templates of provisioning policies (pure: no I/O).

    ssid-{DeviceID.SerialNumber[-4:]}
    {secret:cr}                      a per-device secret, stable across sessions
    {spread_time:3600}               a dateTime whose offset within the hour is the device's own
    {ManagementServer.PeriodicInformInterval}

A placeholder names a device field (DeviceID.ID|OUI|ProductClass|SerialNumber|
Manufacturer, SoftwareVersion, HardwareVersion, ProvisioningCode), a parameter
(absolute, or relative to the device's root object), or one of the functions
``secret`` and ``spread_time``, optionally followed by an index or slice
(``[-4:]``). ``{{`` and ``}}`` are literal braces. Nothing else is evaluated:
templates come from operators, but they must never run code.

Functions derive from a hash of the device id, so each device gets its own
value and gets the same one every session: a policy that sets them converges
instead of re-setting the device forever.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from acs.core.secrets import is_secret_name

FIELDS = frozenset(
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
FUNCTIONS = frozenset({"secret", "spread_time"})
ROOTS = ("Device.", "InternetGatewayDevice.")
MAX_LENGTH = 4096

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_SLICE = re.compile(r"\[(-?\d+)?(?:(:)(-?\d+)?)?\]$")


class TemplateError(ValueError):
    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" (at character {position})" if position is not None else ""
        super().__init__(message + where)
        self.position = position


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str  # a field, a parameter path, or a function name
    argument: str | None  # a function's argument
    start: int | None
    stop: int | None
    is_slice: bool
    position: int


Part = str | Placeholder


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[Part, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def parameters(self, root: str) -> list[str]:
        """The parameter paths this template reads, made absolute under ``root``."""
        return [
            absolute(p.name, root)
            for p in self.parts
            if isinstance(p, Placeholder) and p.name not in FIELDS and p.name not in FUNCTIONS
        ]


def absolute(path: str, root: str) -> str:
    """A path as written in a policy, absolute: "ManagementServer.X" under the
    device's root object (Device. or InternetGatewayDevice.)."""
    return path if path.startswith(ROOTS) else root + path


def parse_template(text: str) -> Template:
    if len(text) > MAX_LENGTH:
        raise TemplateError(f"a template is at most {MAX_LENGTH} characters")
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError("'}' without '{' (write '}}' for a brace)", i)
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        if text.startswith("{{", i):
            literal.append("{")
            i += 2
            continue
        end = text.find("}", i)
        if end < 0:
            raise TemplateError("'{' is never closed", i)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_placeholder(text[i + 1 : end].strip(), i))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def _placeholder(body: str, position: int) -> Placeholder:
    start = stop = None
    is_slice = False
    match = _SLICE.search(body)
    if match:
        body = body[: match.start()].rstrip()
        start = int(match.group(1)) if match.group(1) is not None else None
        is_slice = match.group(2) is not None
        stop = int(match.group(3)) if match.group(3) is not None else None
        if not is_slice and start is None:
            raise TemplateError("an empty index []", position)
    name, colon, argument = body.partition(":")
    name = name.strip()
    if colon:
        if name not in FUNCTIONS:
            raise TemplateError(
                f"unknown function {name!r}; known: {', '.join(sorted(FUNCTIONS))}", position
            )
        argument = argument.strip()
        if name == "spread_time" and not (
            re.fullmatch(r"[0-9]{1,8}", argument) and 0 < int(argument) <= 31536000
        ):
            raise TemplateError("spread_time takes a period in seconds (1 to 31536000)", position)
        if name == "secret" and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", argument):
            raise TemplateError("secret takes a name of letters, digits, '_' or '-'", position)
        return Placeholder(name, argument, start, stop, is_slice, position)
    if name in FUNCTIONS:
        raise TemplateError(f"{name} needs an argument, e.g. {{{name}:...}}", position)
    if name.endswith(".") and _NAME.fullmatch(name[:-1]):
        raise TemplateError(f"{name!r} is an object, not a parameter", position)
    if not _NAME.fullmatch(name):
        raise TemplateError(f"{name!r} is not a field or parameter name", position)
    if name not in FIELDS and is_secret_name(name):
        # its clear value would leave the ACS in whatever parameter the template sets
        raise TemplateError(f"{name!r} is a secret: a template may not read it", position)
    return Placeholder(name, None, start, stop, is_slice, position)


@dataclass(frozen=True, slots=True)
class Context:
    """What a template may read about one device."""

    device_id: str
    root: str
    fields: dict[str, str | None]
    value_of: Callable[[str], str | None]  # an absolute parameter path -> stored value
    key: bytes  # the instance secret that per-device secrets derive from


def render(template: Template, ctx: Context) -> str:
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _value(part, ctx)
        if part.is_slice:
            value = value[part.start : part.stop]
        elif part.start is not None:
            try:
                value = value[part.start]
            except IndexError:
                raise TemplateError(
                    f"index {part.start} is outside {part.name}'s value {value!r}", part.position
                ) from None
        out.append(value)
    return "".join(out)


def _value(p: Placeholder, ctx: Context) -> str:
    if p.name == "secret":
        digest = hmac.new(ctx.key, f"{p.argument}/{ctx.device_id}".encode(), hashlib.sha256)
        return digest.hexdigest()[:20]
    if p.name == "spread_time":
        assert p.argument is not None
        period = int(p.argument)
        offset = int.from_bytes(hashlib.sha256(ctx.device_id.encode()).digest()[:8]) % period
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if p.name in FIELDS:
        value = ctx.fields.get(p.name)
        if value is None:
            raise TemplateError(f"the device has no {p.name}", p.position)
        return value
    path = absolute(p.name, ctx.root)
    value = ctx.value_of(path)
    if value is None:
        raise TemplateError(f"the device has no value for {path}", p.position)
    return value
