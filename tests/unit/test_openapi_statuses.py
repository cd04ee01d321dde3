"""Every status a route's code can answer with is in the OpenAPI document.

Read from the source: the handler and the module functions it calls (one
level down), for ``ApiError(<status>`` and ``not_found(`` (404). A status
added to a handler without its line in ``responses`` fails here, before a
client meets it undocumented."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap

from acs.web.api.app import openapi_document
from acs.web.api.plumbing import api

_RAISES = re.compile(r"ApiError\(\s*(\d{3})")
_CALLS = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(")


def _statuses(handler: object) -> set[int]:
    source = textwrap.dedent(inspect.getsource(handler))  # type: ignore[arg-type]
    module = sys.modules[handler.__module__]  # type: ignore[attr-defined]
    sources = [source]
    for name in set(_CALLS.findall(source)):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            sources.append(inspect.getsource(helper))
    found = {int(s) for text in sources for s in _RAISES.findall(text)}
    if any("not_found(" in text for text in sources):
        found.add(404)
    return found


def test_every_raised_status_is_documented() -> None:
    doc = openapi_document()
    missing = []
    for route in api.routes:
        documented = {int(s) for s in doc["paths"][route.path][route.method.lower()]["responses"]}
        for status in _statuses(route.handler) - documented:
            missing.append(f"{route.method} {route.path}: {status}")
    assert not missing, missing


def test_the_scan_sees_what_handlers_raise() -> None:
    # the scan itself: it finds a 409 in a handler and a 404 through not_found
    by_name = {r.handler.__name__: r for r in api.routes}
    assert {404, 409} <= _statuses(by_name["cancel_task"].handler)
    assert 507 in _statuses(by_name["upload_file"].handler)
