"""Secrets written into policies: sealed at rest, shown masked, and kept when
a policy comes back masked.

A policy may set a secret to a literal (a Wi-Fi passphrase for a whole
fleet). It is stored sealed (acs.core.sealing) and opened when the policy is
loaded for the engine. Reading the policy shows ``MASK`` in its place, so an
edit that sends the policy back unchanged must keep the real value, not set
every device's passphrase to eight asterisks. Templates (``{secret:...}``)
hide nothing and are shown as written. Pure: no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from acs.core.sealing import Sealer, SealError
from acs.core.secrets import MASK, is_sealed, is_secret_name
from acs.core.templates import TemplateError, parse_template

POLICY = "policy"  # where a policy's secrets are sealed: apart from trees and jobs


def _literal_secret(path: str, value: Any) -> bool:
    if not isinstance(value, str) or not value or not is_secret_name(path):
        return False
    try:
        return parse_template(value).is_literal
    except TemplateError:
        return True  # not for us to judge here: hide it


def _values(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(where, holder, key) of every value a spec sets, ``where`` naming the parameter."""
    found = []
    for rule in spec.get("parameters") or []:
        if isinstance(rule, dict) and isinstance(rule.get("path"), str):
            found.append((rule["path"], rule, "value"))
    for obj in spec.get("objects") or []:
        if not isinstance(obj, dict):
            continue
        for kind in ("parameters", "keys"):
            held = obj.get(kind)
            if isinstance(held, dict):
                found.extend((f"{obj.get('path', '')}{name}", held, name) for name in held)
    return found


def seal_spec(spec: dict[str, Any], sealer: Sealer) -> bool:
    """Seal, in place, the literal secrets of a spec about to be stored; True if any."""
    sealed = False
    for where, holder, key in _values(spec):
        if not is_sealed(holder[key]) and _literal_secret(where, holder[key]):
            holder[key] = sealer.seal(holder[key], POLICY, where)
            sealed = True
    return sealed


def open_spec(spec: dict[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """A copy of a stored spec with its sealed secrets opened, for the engine.
    ValueError when one does not open (another installation's key)."""
    out = copy.deepcopy(spec)
    for where, holder, key in _values(out):
        if not is_sealed(holder[key]):
            continue
        if sealer is None:
            raise ValueError(f"the policy's value of {where} is sealed and no key was given")
        try:
            holder[key] = sealer.open(holder[key], POLICY, where)
        except SealError as err:
            raise ValueError(f"the policy's value of {where}: {err}") from None
    return out


def shown_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    for where, holder, key in _values(out):
        if _literal_secret(where, holder[key]):
            holder[key] = MASK
    return out


def keep_masked(spec: dict[str, Any], before: dict[str, Any] | None) -> list[dict[str, str]]:
    """Put back, in place, each secret ``spec`` sends as the mask from ``before``
    (the stored policy); the errors of the ones that have nothing to keep."""
    kept = {where: holder[key] for where, holder, key in _values(before or {})}
    errors = []
    for where, holder, key in _values(spec):
        if holder[key] != MASK or not is_secret_name(where):
            continue
        if kept.get(where) is not None and kept[where] != MASK:
            holder[key] = kept[where]
        else:
            errors.append(
                {"path": where, "message": f"{MASK} is the mask of a secret: send the value"}
            )
    return errors
