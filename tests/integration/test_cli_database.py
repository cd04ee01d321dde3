"""`acs token/user/...` reach the database of the ACS that runs on their data dir,
and never set up a second installation by accident. Real processes: `acs serve`
on an embedded PostgreSQL, and the commands run as an operator would run them."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from acs.store.db import drop_database, ensure_database, postmaster_running

ACS = str(Path(sys.executable).with_name("acs"))


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACS_")}
    env.pop("XDG_RUNTIME_DIR", None)  # as on a container's root shell: nothing may warn
    env.update(ACS_DATA_DIR=str(data_dir), **extra)
    return env


def acs(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Outside pytest's own temp root: pgserver, run as root, runs PostgreSQL as
    the "pgserver" user and opens the directories above the data for it, and
    every pytest session starting meanwhile closes /tmp/pytest-of-<user> again."""
    path = Path(tempfile.mkdtemp(prefix="acs-cli-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    """`acs serve` on an embedded PostgreSQL in tmp/installation: data dir, API URL, process."""
    data_dir = tmp_path / "installation"
    env = env_for(
        data_dir,
        ACS_HOST="127.0.0.1",
        ACS_CWMP_PORT="0",
        ACS_API_PORT="0",
        ACS_FILES_PORT="0",
        ACS_CPE_AUTH="none",
        ACS_DEFAULT_POLICIES="false",
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [ACS, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    api = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("API (operators):"):
                api = line.split()[-1]
                break
        assert api is not None, (tmp_path / "serve.log").read_text()
        yield data_dir, api, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def wait_stopped(pgdata: Path, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not postmaster_running(pgdata):
            return True
        time.sleep(0.2)
    return False


def test_commands_use_the_running_acs_database_or_refuse(
    serving: tuple[Path, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    data_dir, api, _ = serving
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pgdata = (data_dir / "pgdata").resolve()

    # from another directory, pointed at the running ACS's data dir: its database
    made = acs(elsewhere, env_for(data_dir), "token", "create", "--name", "me", "--role", "admin")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("acs_") and "\n" not in secret  # stdout: the token alone
    assert made.stderr == f"database: embedded, data in {pgdata} (running)\n"
    assert get(api + "devices", secret) == 200
    assert get(api + "devices", "acs_not-a-token") == 401  # the check is real

    # another data dir (or none: ./var of wherever one stands): refused, nothing made
    for where, env in (
        (tmp_path / "typo", env_for(tmp_path / "typo")),
        (elsewhere / "var", {k: v for k, v in env_for(data_dir).items() if k != "ACS_DATA_DIR"}),
    ):
        refused = acs(elsewhere, env, "token", "create", "--name", "me2", "--role", "admin")
        assert refused.returncode == 1
        assert f"no ACS database in {(where / 'pgdata').resolve()}" in refused.stderr
        assert "ACS_DATA_DIR" in refused.stderr and "acs migrate" in refused.stderr
        assert refused.stdout == ""
        assert not where.exists(), f"{where} was created"
        for cmd in (["user", "list"], ["cpe-credential", "delete", "x"], ["token", "list"]):
            assert acs(elsewhere, env, *cmd).returncode == 1, cmd
        assert not where.exists()

    # the refusal's advice works: `acs migrate` makes a new installation on purpose
    fresh = tmp_path / "fresh"
    migrated = acs(elsewhere, env_for(fresh), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied: 0001_init.sql" in migrated.stdout
    assert "started for this command" in migrated.stderr
    assert "Warning" not in migrated.stderr
    assert acs(elsewhere, env_for(fresh), "token", "list").returncode == 0
    assert wait_stopped(fresh / "pgdata")  # started for the command, stopped after it


def test_with_no_acs_running_the_command_starts_and_stops_the_embedded_server(
    serving: tuple[Path, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    data_dir, _, server = serving
    made = acs(tmp_path, env_for(data_dir), "token", "create", "--name", "ci", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    # stop the ACS, and its embedded server with it
    server.send_signal(signal.SIGINT)
    assert server.wait(60) == 0
    pgdata = (data_dir / "pgdata").resolve()
    assert wait_stopped(pgdata, 60), "the ACS's embedded server is still up"
    listed = acs(tmp_path, env_for(data_dir), "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == f"database: embedded, data in {pgdata} (started for this command)\n"
    assert listed.stdout.startswith("ci\tviewer\tcreated ")
    assert wait_stopped(pgdata)


@pytest.mark.db
async def test_a_database_url_without_acs_tables_is_refused(
    pg_admin_url: str, tmp_path: Path
) -> None:
    name = f"acs_test_empty_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        env = env_for(tmp_path / "unused", ACS_DATABASE_URL=url)
        refused = acs(tmp_path, env, "user", "list")
        assert refused.returncode == 1
        assert "database: " in refused.stderr and "has no ACS tables" in refused.stderr
        assert "acs migrate" in refused.stderr
    finally:
        await drop_database(pg_admin_url, name)


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    # port 1 on loopback: nothing listens there
    env = env_for(tmp_path, ACS_DATABASE_URL="postgresql://acs:s3cret-pw@127.0.0.1:1/acs")
    refused = acs(tmp_path, env, "token", "list")
    assert refused.returncode == 1
    assert "cannot use the database postgresql://acs:***@127.0.0.1:1/acs" in refused.stderr
    assert "s3cret-pw" not in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
