"""The README's settings table and the settings class say the same thing.

A setting missing from the table is invisible to operators; a row without a
setting is a promise the ACS does not keep. Rows may name several variables
(`ACS_A` / `ACS_B`) and a variable may carry a note in parentheses.
"""

from __future__ import annotations

import re
from pathlib import Path

from acs.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _table_rows() -> list[str]:
    text = README.read_text()
    start = text.index("\n## Settings\n")
    end = text.index("\n## ", start + 1)
    return [line for line in text[start:end].splitlines() if line.startswith("| `ACS_")]


def _documented() -> set[str]:
    names: set[str] = set()
    for row in _table_rows():
        first_cell = row.split("|")[1]
        names.update(re.findall(r"`(ACS_[A-Z0-9_]+)`", first_cell))
    return names


def _settings() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_the_table_is_found() -> None:
    assert len(_table_rows()) >= 30, "the README's settings table was not found"


def test_every_setting_is_in_the_readme_table() -> None:
    missing = sorted(_settings() - _documented())
    assert not missing, f"settings without a row in README.md's table: {missing}"


def test_every_row_names_a_real_setting() -> None:
    unknown = sorted(_documented() - _settings())
    assert not unknown, f"README.md's table names settings acs/config.py does not have: {unknown}"


def test_each_setting_has_one_row() -> None:
    seen: dict[str, int] = {}
    for row in _table_rows():
        for name in set(re.findall(r"`(ACS_[A-Z0-9_]+)`", row.split("|")[1])):
            seen[name] = seen.get(name, 0) + 1
    twice = sorted(name for name, count in seen.items() if count > 1)
    assert not twice, f"settings listed in more than one row: {twice}"
