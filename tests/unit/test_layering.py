"""The rooms of docs/architecture.md, enforced: who may import whom, and no import circles.

Every import counts, also one inside a function (a lazy import hides a circle,
it does not remove it); only imports under ``if TYPE_CHECKING:`` are left out,
as they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("acs", "cpe_simulator", "bench")

# room -> prefixes it must never import (a prefix matches the module and its children)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "acs.cwmp": ("acs.", "aiohttp", "asyncpg"),  # pure protocol: nothing of the rest of acs
    "acs.core": (
        "acs.store",
        "acs.services",
        "acs.web",
        "acs.connreq",
        "aiohttp",
        "asyncpg",
    ),
    "acs.store": ("acs.services", "acs.web", "acs.connreq", "aiohttp"),
    "acs.services": ("acs.web", "aiohttp.web"),
    "acs.connreq": ("acs.web", "acs.services", "acs.store"),
    # TR-111's codecs are pure like acs.cwmp, so the simulator can share them
    "acs.connreq.stun": ("acs.", "aiohttp", "asyncpg"),
    "acs.connreq.udp": ("acs.", "aiohttp", "asyncpg"),
    "acs.connreq.xmpp": ("acs.", "aiohttp", "asyncpg", "slixmpp"),  # Annex K's IQ codec
    "cpe_simulator": ("acs.",),  # the simulator reuses the pure protocol code only (below)
}
ALLOWED: dict[str, tuple[str, ...]] = {
    "acs.cwmp": ("acs.cwmp",),
    "cpe_simulator": ("acs.cwmp", "acs.connreq.stun", "acs.connreq.udp", "acs.connreq.xmpp"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield _module_name(path), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in ALL]
            # `from acs.connreq import stun` is an import of the module acs.connreq.stun
            yield from submodules or [base]


def _matches(name: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


ALL = dict(_sources())


def _room(module: str) -> str | None:
    rooms = [r for r in FORBIDDEN if _matches(module, r)]
    return max(rooms, key=len) if rooms else None


@pytest.mark.parametrize("module", sorted(m for m in ALL if _room(m)))
def test_a_room_imports_only_what_its_rules_allow(module: str) -> None:
    room = _room(module)
    assert room is not None
    broken = sorted(
        {
            name
            for name in _imports(module, ALL[module])
            if any(_matches(name, p) for p in FORBIDDEN[room])
            and not any(_matches(name, p) for p in ALLOWED.get(room, ()))
        }
    )
    assert not broken, f"{module} (room {room}) imports {broken}: see docs/architecture.md"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in ALL.items():
        graph[module] = {name for name in _imports(module, path) if name in ALL and name != module}
    return graph


def test_no_import_circles() -> None:
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_rules_see_the_code() -> None:
    """The walker finds real imports, so an empty result above means something."""
    imports = set(_imports("acs.web.cwmp", ALL["acs.web.cwmp"]))
    assert "acs.services.session_driver" in imports
    assert "aiohttp" in imports or "aiohttp.web" in imports
