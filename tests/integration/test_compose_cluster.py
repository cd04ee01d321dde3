"""docker/compose.cluster.yaml: two ACS replicas, HAProxy and PostgreSQL.

`docker compose config` (or Debian's docker-compose) must accept it, and the
HAProxy config it mounts, the one the cluster rig tests (deploy/cluster/
haproxy.cfg), must send traffic where the compose file puts the ACS hosts:
every `server` line names an ACS service's address and the port that
service listens on, and every frontend is published.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.cluster.yaml"
HAPROXY_CFG = REPO / "deploy" / "cluster" / "haproxy.cfg"
REQUIRED = {
    "ACS_CPE_PASSWORD": "cpe-secret",
    "ACS_SECRETS_KEY": "k" * 44,
    "ACS_CLUSTER_SECRET": "c" * 44,
}


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


COMMAND = compose_command()
needs_compose = pytest.mark.skipif(
    COMMAND is None,
    reason="neither `docker compose` nor docker-compose is installed"
    " (Debian: apt-get install docker-compose)",
)


def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMMAND is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACS_")}
    return subprocess.run(
        [*COMMAND, "-f", str(COMPOSE), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    done = config(REQUIRED)
    assert done.returncode == 0, done.stderr
    parsed = yaml.safe_load(done.stdout)
    assert isinstance(parsed, dict)
    return parsed


@needs_compose
def test_compose_config_accepts_the_cluster_file(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"postgres", "acs1", "acs2", "haproxy"}
    envs = [services[name]["environment"] for name in ("acs1", "acs2")]
    for env in envs:
        assert env["ACS_FILE_STORE"] == "postgres"  # either host serves every file
        assert env["ACS_DATABASE_URL"].startswith("postgresql://acs:acs@postgres:5432/")
    # one installation: the same keys, database and public URLs on both hosts, and
    # each its own name
    assert [e.pop("ACS_HOST_NAME") for e in envs] == ["acs1", "acs2"]
    assert envs[0] == envs[1]
    assert envs[0]["ACS_SECRETS_KEY"] == REQUIRED["ACS_SECRETS_KEY"]
    assert envs[0]["ACS_CLUSTER_SECRET"] == REQUIRED["ACS_CLUSTER_SECRET"]
    haproxy_address = services["haproxy"]["networks"]["cluster"]["ipv4_address"]
    assert envs[0]["ACS_TRUSTED_PROXIES"] == haproxy_address
    # each replica keeps its own cache volume
    assert services["acs1"]["volumes"] != services["acs2"]["volumes"]


@needs_compose
@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_compose_config_refuses_a_cluster_without_its_secrets(missing: str) -> None:
    done = config({k: v for k, v in REQUIRED.items() if k != missing})
    assert done.returncode != 0
    assert missing in done.stderr + done.stdout


def _haproxy_lines() -> list[str]:
    return [line.split("#", 1)[0].strip() for line in HAPROXY_CFG.read_text().splitlines()]


@needs_compose
def test_the_mounted_haproxy_config_points_at_the_compose_acs_hosts(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    mounts = [str(v) if isinstance(v, str) else v["source"] for v in services["haproxy"]["volumes"]]
    assert any(m.split(":")[0] == str(HAPROXY_CFG) for m in mounts), mounts
    acs_at = {
        services[name]["networks"]["cluster"]["ipv4_address"]: services[name]["environment"]
        for name in ("acs1", "acs2")
    }
    listening = {
        port
        for env in acs_at.values()
        for port in (env["ACS_CWMP_PORT"], env["ACS_API_PORT"], env["ACS_FILES_PORT"])
    }
    servers = [
        m.groups()
        for line in _haproxy_lines()
        if (m := re.match(r"server\s+\S+\s+([\d.]+):(\d+)(?:.*\bport\s+(\d+))?", line))
    ]
    assert servers, "no server lines in the HAProxy config"
    for address, port, check_port in servers:
        assert address in acs_at, f"HAProxy sends to {address}, no ACS service there"
        assert port in listening and (check_port is None or check_port in listening)
    assert {address for address, _, _ in servers} == set(acs_at)  # both replicas get traffic
    binds = {m.group(1) for line in _haproxy_lines() if (m := re.match(r"bind\s+:(\d+)", line))}
    published = set()
    for p in services["haproxy"]["ports"]:
        published.add(str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1])
    assert binds and binds == published


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CFG)],
        env={**os.environ, "ACSRIG_RUN": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
