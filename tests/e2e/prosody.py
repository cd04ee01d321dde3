"""A real XMPP server for tests: Debian's prosody with a throwaway config.

Listens on 127.0.0.1 (or the address given: a NAT test's outside one) on a
free port, keeps its data in a temporary folder, has one virtual host;
accounts are made with ``prosodyctl register``. With ``tls`` (a certificate
from tests/certs.py for the domain) it offers STARTTLS, and with
``require_tls`` refuses a client that does not take it. Tests that need it
skip when prosody is not installed (apt-get install prosody).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.certs import Issued

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"
SKIP_REASON = "prosody is not installed (apt-get install prosody): the XMPP tests need a server"


def installed() -> bool:
    return Path(PROSODY).exists() and Path(PROSODYCTL).exists()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Prosody:
    def __init__(
        self,
        folder: Path,
        domain: str = "xmpp.test",
        *,
        host: str = "127.0.0.1",
        tls: Issued | None = None,
        require_tls: bool = False,
    ) -> None:
        self.folder, self.domain, self.host = folder, domain, host
        self.port = _free_port(host)
        modules = ["roster", "saslauth", "disco", "ping", "posix"]
        ssl = ""
        if tls is not None:
            modules.append("tls")
            ssl = f'ssl = {{ certificate = "{tls.cert}"; key = "{tls.key}"; }}'
        self.config = folder / "prosody.cfg.lua"
        self.log = folder / "prosody.log"
        (folder / "data").mkdir(exist_ok=True)
        self.config.write_text(
            f"""
pidfile = "{folder}/prosody.pid"
data_path = "{folder}/data"
run_as_root = true
daemonize = false
interfaces = {{ "{host}" }}
local_interfaces = {{ "{host}" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ {", ".join(f'"{m}"' for m in modules)} }}
modules_disabled = {{ "s2s", "offline" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = {"true" if require_tls else "false"}
{ssl}
allow_unencrypted_plain_auth = true
limits = {{ c2s = {{ rate = "1mb/s" }} }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{self.log}" }} }}
VirtualHost "{domain}"
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def register(self, user: str, password: str) -> str:
        subprocess.run(
            [PROSODYCTL, "--config", str(self.config), "register", user, self.domain, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{user}@{self.domain}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [PROSODY, "--config", str(self.config), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("prosody did not listen within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
