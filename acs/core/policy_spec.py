"""A stored policy, compiled for the engine or refused with every reason (pure: no I/O).

The one compiler of a policy's desired state: the API runs it when a policy
is written (a 400 lists its errors) and the ACS when it loads the policies
for sessions, so what the API accepted cannot fail a session. Errors carry
the JSON path of the field in the API's body (``parameters.0.value``,
``tags.add.0``) and the rule it breaks.

Checked beyond the shape: paths are CWMP paths (absolute, or relative to the
device's root object), templates parse, tags follow acs.core.tags, and a
literal value fits its parameter (acs.core.values) under every root it may
land on. Templated values can only be checked on the device, when the
engine renders them; a bad one is that policy's fault on that device.
"""

from __future__ import annotations

import math
import re
from typing import Any

from acs.core import policies as engine
from acs.core import values
from acs.core.tags import tag_problem
from acs.core.tasks import XSD_TYPES
from acs.core.templates import ROOTS, Template, TemplateError, parse_template

MAX_COUNT = 1000
MAX_AGE_S = 365 * 86400
# segments of names (X_ACME-COM_ vendor prefixes included) or instance numbers
_SEGMENT = r"(?:[A-Za-z_][A-Za-z0-9_\-]*|[0-9]+)"
PARAMETER_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
OBJECT_PATH = re.compile(rf"(?:{_SEGMENT}\.)+")


class SpecError(ValueError):
    """A policy the engine cannot use; ``errors`` holds JSON paths and messages."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))
        self.errors = errors


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})


def _list(spec: dict[str, Any], key: str, errors: _Errors) -> list[Any]:
    value = spec.get(key, [])
    if not isinstance(value, list):
        errors.add(key, "must be a list")
        return []
    return value


def _item(value: Any, where: str, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.add(where, "must be an object")
        return None
    return value


def _path(value: Any, where: str, errors: _Errors, *, obj: bool) -> str | None:
    kind = "an object path ending with '.'" if obj else "a parameter path (not ending with '.')"
    rule = OBJECT_PATH if obj else PARAMETER_PATH
    if not isinstance(value, str) or len(value) > 1024 or not rule.fullmatch(value):
        errors.add(where, f"must be {kind}, of names and instance numbers separated by dots")
        return None
    return value


def _template(value: Any, where: str, errors: _Errors) -> Template | None:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        value = None
    if not isinstance(value, str | int | float):
        errors.add(where, "must be a template string, a number or a boolean")
        return None
    try:
        return parse_template(str(value))
    except TemplateError as err:
        errors.add(where, f"invalid template: {err}")
        return None


def candidates(path: str) -> list[str]:
    """The absolute paths a policy path may land on: relative ones under either root."""
    return [path] if path.startswith(ROOTS) else [root + path for root in ROOTS]


def _literal(
    template: Template | None,
    paths: list[str],
    declared: str | None,
    where: str,
    errors: _Errors,
) -> None:
    """A value without placeholders must fit its parameter wherever it lands."""
    if template is None or not template.is_literal:
        return
    for path in paths:
        problem = values.problem(path, template.text, declared)
        if problem is not None:
            errors.add(where, problem)
            return


def compile_spec(policy_id: int, name: str, priority: int, spec: Any) -> engine.Policy:
    """The engine's Policy from a stored (API-shaped) spec; SpecError lists every error."""
    errors = _Errors()
    if not isinstance(spec, dict):
        raise SpecError([{"path": "", "message": "the policy's spec must be an object"}])
    params = []
    for i, raw in enumerate(_list(spec, "parameters", errors)):
        p = _item(raw, f"parameters.{i}", errors)
        if p is None:
            continue
        path = _path(p.get("path"), f"parameters.{i}.path", errors, obj=False)
        declared = p.get("type")
        if declared is not None and declared not in XSD_TYPES:
            errors.add(f"parameters.{i}.type", f"unknown xsd type {declared!r}")
            declared = None
        template = _template(p.get("value"), f"parameters.{i}.value", errors)
        if path is not None:
            _literal(template, candidates(path), declared, f"parameters.{i}.value", errors)
            if template is not None:
                params.append(engine.ParameterRule(path, template, declared))
    objects = []
    for i, raw in enumerate(_list(spec, "objects", errors)):
        o = _item(raw, f"objects.{i}", errors)
        if o is not None:
            rule = _object(o, f"objects.{i}", errors)
            if rule is not None:
                objects.append(rule)
    attributes = []
    for i, raw in enumerate(_list(spec, "attributes", errors)):
        a = _item(raw, f"attributes.{i}", errors)
        if a is None:
            continue
        path = a.get("path")
        ok = _path(path, f"attributes.{i}.path", errors, obj=str(path).endswith("."))
        notification = a.get("notification")
        if notification not in (0, 1, 2) or isinstance(notification, bool):
            errors.add(f"attributes.{i}.notification", "must be 0 (off), 1 (passive) or 2 (active)")
        elif ok is not None:
            attributes.append(engine.AttributeRule(ok, int(notification)))
    refresh = []
    for i, raw in enumerate(_list(spec, "refresh", errors)):
        r = _item(raw, f"refresh.{i}", errors)
        if r is None:
            continue
        path = r.get("path")
        ok = _path(path, f"refresh.{i}.path", errors, obj=str(path).endswith("."))
        age = _number(r.get("maxAgeS"), 0, MAX_AGE_S)
        if age is None:
            errors.add(f"refresh.{i}.maxAgeS", f"must be a number of seconds, 0 to {MAX_AGE_S}")
        elif ok is not None:
            refresh.append(engine.RefreshRule(ok, age))
    _tags(spec.get("tags", {}), errors)
    _download(spec.get("download"), errors)
    _backup(spec.get("backup"), errors)
    if errors.items:
        raise SpecError(errors.items)
    return engine.Policy(
        policy_id, name, priority, tuple(params), tuple(objects), tuple(attributes), tuple(refresh)
    )


def _number(value: Any, lo: float, hi: float) -> float | None:
    """``value`` as a float when it is a finite number within [lo, hi], else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and lo <= value <= hi else None


def _object(o: dict[str, Any], where: str, errors: _Errors) -> engine.ObjectRule | None:
    table = _path(o.get("path"), f"{where}.path", errors, obj=True)
    count, keys, parameters = o.get("count"), o.get("keys"), o.get("parameters") or {}
    if (count is None) == (keys is None):
        errors.add(where, "give exactly one of count or keys")
        return None
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
            errors.add(f"{where}.count", f"must be a whole number, 0 to {MAX_COUNT}")
            return None
        if parameters:
            errors.add(where, "parameters go with keys (one instance), not with count")
            return None
        return engine.ObjectRule(path=table, count=count) if table else None

    def named(group: Any, kind: str) -> tuple[tuple[str, Template], ...]:
        if not isinstance(group, dict):
            errors.add(f"{where}.{kind}", "must be an object of parameter names and values")
            return ()
        out = []
        for key, value in group.items():
            at = f"{where}.{kind}.{key}"
            name = _path(key, at, errors, obj=False)
            template = _template(value, at, errors)
            if name is None or template is None:
                continue
            if table is not None:
                # the instance is not known yet: the model's rule is the table's, per {i}
                lands = [p + "{i}." + name for p in candidates(table)]
                _literal(template, lands, None, at, errors)
            out.append((name, template))
        return tuple(out)

    rule_keys, rule_params = named(keys, "keys"), named(parameters, "parameters")
    if table is None:
        return None
    return engine.ObjectRule(path=table, keys=rule_keys, parameters=rule_params)


def _tags(tags: Any, errors: _Errors) -> None:
    if not isinstance(tags, dict):
        errors.add("tags", "must be an object with add and remove lists")
        return
    for key, value in tags.items():
        if key not in ("add", "remove"):
            errors.add(f"tags.{key}", "unknown key: use add or remove")
            continue
        if not isinstance(value, list):
            errors.add(f"tags.{key}", "must be a list of tags")
            continue
        for n, tag in enumerate(value):
            problem = tag_problem(tag)
            if problem is not None:
                errors.add(f"tags.{key}.{n}", problem)


def _download(download: Any, errors: _Errors) -> None:
    if download is None:
        return
    if not isinstance(download, dict):
        errors.add("download", "must be an object with file and fileType")
        return
    if not _text(download.get("file"), 200):
        errors.add("download.file", "must be a file name of 1-200 characters")
    if "fileType" in download and not _text(download["fileType"], 64):
        errors.add("download.fileType", "must be a file type of 1-64 characters")


def _backup(backup: Any, errors: _Errors) -> None:
    """A config backup job: its FileType, ``every`` (seconds) and ``onFirmwareChange``."""
    if backup is None:
        return
    if not isinstance(backup, dict):
        errors.add("backup", "must be an object with fileType, every or onFirmwareChange")
        return
    if "fileType" in backup and not _text(backup["fileType"], 64):
        errors.add("backup.fileType", "must be a file type of 1-64 characters")
    every = backup.get("every")
    if every is not None and (_number(every, 60, MAX_AGE_S) is None or every != int(every)):
        errors.add("backup.every", f"must be a whole number of seconds, 60 to {MAX_AGE_S}")
    if not isinstance(backup.get("onFirmwareChange", False), bool):
        errors.add("backup.onFirmwareChange", "must be true or false")


def _text(value: Any, most: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= most


def check_overrides(rows: list[tuple[str, str, str | None]]) -> None:
    """A device's overrides ([path, value, type?], literal values); SpecError otherwise."""
    errors = _Errors()
    for i, (path, value, declared) in enumerate(rows):
        if _path(path, f"parameters.{i}.0", errors, obj=False) is None:
            continue
        for absolute in candidates(path):
            problem = values.problem(absolute, value, declared)
            if problem is not None:
                errors.add(f"parameters.{i}.1", problem)
                break
    if errors.items:
        raise SpecError(errors.items)
