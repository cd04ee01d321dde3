"""Generate the ACS's index of parameter types and value rules from the Broadband Forum XML.

Run from the repository root::

    .venv/bin/python schemas/generate_datamodel_index.py [--source DIR] [--out FILE]

The ACS checks every value an operator wants sent to a CPE against the
parameter's type (acs/core/values.py). What the device reported wins; for the
rest (a bulk job, a policy, a device whose tree is not read yet) it needs the
data model's type, ranges, sizes and enumerations. The ACS package must not
read schemas/ at run time (it is not installed with the package), so this
script writes a compact index into the package: acs/core/datamodel_index.json.

One entry per parameter pattern (``Device.NAT.PortMapping.{i}.ExternalPort``)
whose value has a rule: every non-string type, and strings with a size, an
enumeration or a list syntax. A plain unbounded string has no entry. Output is
deterministic; tests/unit/test_values.py fails when the committed file differs
from a fresh run.

Keys of an entry: ``t`` local xsd type; ``e`` enumeration; ``r`` ranges and
``s`` sizes (``[min, max]``, null = open); ``l`` a comma-separated list (its
value: the list's own sizes, or [] when unbounded); ``h`` hidden or secured.
Deprecated and obsoleted parameters are kept (devices still report them);
deleted ones are not. XSD ``pattern`` facets are not kept (their regex dialect
is not Python's), nor enumerations taken from a sibling parameter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lxml import etree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate_templates import _TypeResolver  # noqa: E402

DEFAULT_SOURCE = HERE / "bbf"
DEFAULT_OUT = HERE.parent / "acs" / "core" / "datamodel_index.json"
SOURCES = ("tr-181-2-17-0-cwmp-full.xml", "tr-098-1-8-0-full.xml")


def _entry(xsd_type: str, facets: dict[str, Any]) -> dict[str, Any] | None:
    base = facets.get("item_type", xsd_type)
    entry: dict[str, Any] = {"t": base.removeprefix("xsd:")}
    if facets.get("enum"):
        entry["e"] = facets["enum"]
    if facets.get("ranges"):
        entry["r"] = facets["ranges"]
    if facets.get("sizes"):
        entry["s"] = facets["sizes"]
    if facets.get("list"):
        entry["l"] = facets.get("list_sizes", [])
    if facets.get("hidden"):
        entry["h"] = True
    if entry == {"t": "string"} or entry == {"t": "string", "h": True}:
        return None  # a plain string: no rule to check
    return entry


def read(path: Path) -> dict[str, dict[str, Any]]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.parse(str(path), parser).getroot()
    resolver = _TypeResolver(root)
    out: dict[str, dict[str, Any]] = {}
    for model in root.findall("model"):
        for obj in model.findall("object"):
            if obj.get("status") == "deleted":
                continue
            pattern = obj.get("name")
            for p in obj.findall("parameter"):
                syntax = p.find("syntax")
                if p.get("status") == "deleted" or syntax is None:
                    continue
                entry = _entry(*resolver.resolve(syntax))
                if entry is not None:
                    out[f"{pattern}{p.get('name')}"] = entry
    return out


def render(index: dict[str, dict[str, Any]], sources: tuple[str, ...]) -> str:
    """Deterministic JSON: one parameter per line keeps diffs readable."""
    rows = ",\n".join(
        f"    {json.dumps(k)}: {json.dumps(index[k], ensure_ascii=False, sort_keys=True)}"
        for k in sorted(index)
    )
    return f'{{\n  "sources": {json.dumps(list(sources))},\n  "parameters": {{\n{rows}\n  }}\n}}\n'


def generate(source_dir: Path) -> str:
    index: dict[str, dict[str, Any]] = {}
    for name in SOURCES:
        index.update(read(source_dir / name))
    return render(index, SOURCES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the XML")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    args = parser.parse_args(argv)
    args.out.write_text(generate(args.source), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
