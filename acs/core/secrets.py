"""Which parameter values are secrets, and how every output masks them (pure).

One rule for the whole ACS: device trees, job arguments and results, policy
sources and dry runs, CSV exports, webhook payloads, the web UI and session
logs all ask ``is_secret_name``. A parameter is a secret when its name ends in
one of ``SECRET_SUFFIXES`` (any letter case: vendor extensions write them as
they like) or in one of the endings the operator adds (ACS_SECRET_PARAMETERS).
The clear value of a secret flows only to the CPE (SetParameterValues), to the
connection requester, and to the admin-only, audited secrets endpoint; at rest
it is sealed (acs.core.sealing) and everywhere else it reads ``MASK``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

MASK = "********"
#: ConnectionRequestPassword, ManagementServer.Password, STUNPassword, KeyPassphrase,
#: PreSharedKey, WEPKey, ...; "secret" for vendor names like X_..._SharedSecret
SECRET_SUFFIXES = ("password", "passphrase", "presharedkey", "keypassphrase", "wepkey", "secret")
#: a sealed value as stored (acs.core.sealing); never a value a CPE or operator sends
SEALED_PREFIX = "acs:sealed:v1:"

_ENDING = re.compile(r"[A-Za-z0-9_]{1,64}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s<>@]+@")
# keys of an object that name the parameter its value keys belong to, and
# those value keys: {"path": p, "from": a, "to": b}, {"name": p, "value": v}
_NAME_KEYS = ("path", "name", "parameter")
_VALUE_KEYS = ("value", "v", "from", "to", "wanted", "chosen")

_endings: tuple[str, ...] = SECRET_SUFFIXES


def parse_endings(text: str) -> tuple[str, ...]:
    """ACS_SECRET_PARAMETERS: comma-separated name endings; ValueError names a bad one."""
    endings = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if not _ENDING.fullmatch(item):
            raise ValueError(
                f"{item!r} is not a parameter name ending (1-64 letters, digits or '_')"
            )
        endings.append(item.lower())
    return tuple(dict.fromkeys(endings))


def use_extra_endings(endings: Iterable[str]) -> None:
    """Set the operator's endings for this process (at start, from the settings)."""
    global _endings
    _endings = tuple(dict.fromkeys(SECRET_SUFFIXES + tuple(e.lower() for e in endings)))
    is_secret_name.cache_clear()


def endings() -> tuple[str, ...]:
    return _endings


# remembered by name: it runs for each value of every Inform three times (the
# tree patch, the sealing, the session log's masking), 0.5 us each, over names a
# fleet repeats; bounded, since a CPE may send any name
@functools.lru_cache(maxsize=8192)
def is_secret_name(name: str) -> bool:
    return name.strip().lower().endswith(_endings)


def is_secret_parameter(name: str, xsd_type: str | None) -> bool:
    """A secret by name, unless its type says it cannot be one: a boolean
    named ...Password (TR-098's UserInterface.SharedPassword) is a switch."""
    return is_secret_name(name) and not (xsd_type or "").endswith("boolean")


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def masked(value: str | None) -> str | None:
    """A secret's value as shown: empty and unknown stay as they are (they
    say the CPE reported none), anything else is the mask."""
    return value if not value else MASK


def mask_value(name: str, value: str | None, xsd_type: str | None = None) -> str | None:
    # the cheap tests first: this runs on every entry of every tree read
    if not value or value == MASK or not is_secret_parameter(name, xsd_type):
        return value
    return MASK


def mask_url(text: str) -> str:
    """user:password@ in URLs."""
    return _USERINFO.sub(r"\1" + MASK + "@", text) if "@" in text else text


@functools.lru_cache(maxsize=8)
def _named_values(words: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    word = "(?:" + "|".join(re.escape(w) for w in words) + ")"
    value = r"([^\s'\",;&<>]+)"
    return (
        # "password=hunter2", "X_Secret: 'hunter2'"
        re.compile(rf"(?i)(\b[\w.]*{word}\b['\"]?\s*[=:]\s*['\"]?){value}"),
        # "Device.WiFi.AccessPoint.1.Security.KeyPassphrase hunter2": a parameter
        # path then its value (a CPE echoing a configuration line); plain words
        # ("the password is wrong") are left alone
        re.compile(rf"(?i)(\b\w+(?:\.\w+)*\.\w*{word}\b['\"]?\s+['\"]?){value}"),
    )


def mask_free_text(text: str) -> str:
    """A message that may quote a secret beside its name (a CPE's fault string
    echoing a configuration line, say) and credentials in URLs."""
    lowered = text.lower()
    if any(w in lowered for w in _endings):
        for pattern in _named_values(_endings):
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return mask_url(text)


def mask_document(data: Any) -> Any:
    """A copy of a JSON-like document with every secret masked: values under a
    secret key, [path, value, ...] pairs of a secret path, {"path": p, "value":
    v} objects of a secret path, sealed values, credentials in URLs, and a
    secret quoted beside its name in free text."""
    if isinstance(data, str):
        return MASK if is_sealed(data) else mask_free_text(data)
    if isinstance(data, dict):
        named = next((data[k] for k in _NAME_KEYS if isinstance(data.get(k), str)), None)
        secret_object = named is not None and is_secret_name(named)
        out: dict[Any, Any] = {}
        for key, value in data.items():
            secret_key = isinstance(key, str) and is_secret_name(key)
            if (secret_key or (secret_object and key in _VALUE_KEYS)) and _scalar(value):
                out[key] = _masked_scalar(value)
            elif secret_key and isinstance(value, dict):
                # {path: {"policy": 1, "value": v}}: the key names the parameter
                out[key] = mask_document({"path": key, **value})
                if "path" not in value:
                    del out[key]["path"]
            else:
                out[key] = mask_document(value)
        return out
    if isinstance(data, list | tuple):
        items = [mask_document(v) for v in data]
        if len(items) >= 2 and isinstance(data[0], str) and is_secret_name(data[0]):
            typed = data[2] if len(data) >= 3 and isinstance(data[2], str) else None
            if _scalar(data[1]) and is_secret_parameter(data[0], typed):
                items[1] = _masked_scalar(data[1])
        return items if isinstance(data, list) else tuple(items)
    return data


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _masked_scalar(value: Any) -> Any:
    # a number or boolean set on a secret is as secret as a string
    return masked(value) if value is None or isinstance(value, str) else MASK
