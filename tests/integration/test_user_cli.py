"""`acs user create/passwd/delete/list` against the test database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from acs.cli import main

pytestmark = pytest.mark.db


def test_user_commands(database_url: str, unique_serial, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_DATABASE_URL", database_url)
    runner = CliRunner()
    name = unique_serial("cli").lower()

    def run(*args: str, stdin: str | None = None):
        return runner.invoke(main, list(args), input=stdin)

    made = run(
        "user", "create", name, "--role", "operator", "--password-stdin", stdin="a long secret 1\n"
    )
    assert made.exit_code == 0, made.output
    assert f"user {name!r} created (operator)" in made.output
    again = run(
        "user", "create", name, "--role", "viewer", "--password-stdin", stdin="a long secret 2\n"
    )
    assert again.exit_code == 1 and "exists already" in again.output
    weak = run(
        "user", "create", name + "w", "--role", "viewer", "--password-stdin", stdin="short\n"
    )
    assert weak.exit_code == 1 and "at least 10 characters" in weak.output
    # typed at the prompt, twice, as a person would
    changed = run("user", "passwd", name, stdin="another secret\nanother secret\n")
    assert changed.exit_code == 0 and "sessions ended" in changed.output
    listed = run("user", "list")
    assert f"{name}\toperator\tlast sign-in never" in listed.output
    assert run("user", "delete", name).exit_code == 0
    missing = run("user", "delete", name)
    assert missing.exit_code == 1 and "no user named" in missing.output
