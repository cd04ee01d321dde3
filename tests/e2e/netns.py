"""A real NAT for tests: network namespaces, veth pairs and an nftables masquerade.

    root namespace (the ACS)        "router" namespace           "home" namespace (the CPE)
    10.200.N.1/30  <-- veth -->  10.200.N.2/30 | 10.200.N.5/30  <-- veth -->  10.200.N.6/30
                                 masquerade out, new inbound dropped

The root namespace gets a route to the home /30 through the router, so
datagrams and SYNs towards the CPE's private address go to the router (which
drops them, as a home gateway does) and never to the machine's own default
route. Needs root, ``ip`` (iproute2) and ``nft`` (Debian package nftables);
everything is removed again in ``close()``, which the fixture calls in its
finally, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


class NetnsUnavailable(Exception):
    pass


def _run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")


def why_not() -> str | None:
    """Why a NAT cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (apt-get install -y {package})"
    return None


@dataclass
class Nat:
    tag: str  # unique per test run: names of namespaces and links
    net: int  # the N of 10.200.N.0/29
    steps: list[list[str]] = field(default_factory=list)  # undo, newest first

    @property
    def acs_ip(self) -> str:
        return f"10.200.{self.net}.1"

    @property
    def public_ip(self) -> str:  # the router's outside address: what the ACS sees
        return f"10.200.{self.net}.2"

    @property
    def home_ip(self) -> str:
        return f"10.200.{self.net}.6"

    @property
    def router(self) -> str:
        return f"{self.tag}r"

    @property
    def home(self) -> str:
        return f"{self.tag}h"

    def build(self) -> None:
        n, up, up_peer, lan, lan_peer = (
            self.net,
            f"{self.tag}u0",
            f"{self.tag}u1",
            f"{self.tag}l0",
            f"{self.tag}l1",
        )
        for ns in (self.router, self.home):
            _run("ip", "netns", "add", ns)
            self.steps.insert(0, ["ip", "netns", "del", ns])
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        # root <-> router
        _run("ip", "link", "add", up, "type", "veth", "peer", "name", up_peer)
        self.steps.insert(0, ["ip", "link", "del", up])
        _run("ip", "link", "set", up_peer, "netns", self.router)
        _run("ip", "addr", "add", f"10.200.{n}.1/30", "dev", up)
        _run("ip", "link", "set", up, "up")
        _run("ip", "-n", self.router, "addr", "add", f"10.200.{n}.2/30", "dev", up_peer)
        _run("ip", "-n", self.router, "link", "set", up_peer, "up")
        _run("ip", "-n", self.router, "route", "add", "default", "via", f"10.200.{n}.1")
        # router <-> home
        _run("ip", "-n", self.router, "link", "add", lan, "type", "veth", "peer", "name", lan_peer)
        _run("ip", "-n", self.router, "link", "set", lan_peer, "netns", self.home)
        _run("ip", "-n", self.router, "addr", "add", f"10.200.{n}.5/30", "dev", lan)
        _run("ip", "-n", self.router, "link", "set", lan, "up")
        _run("ip", "-n", self.home, "addr", "add", f"10.200.{n}.6/30", "dev", lan_peer)
        _run("ip", "-n", self.home, "link", "set", lan_peer, "up")
        _run("ip", "-n", self.home, "route", "add", "default", "via", f"10.200.{n}.5")
        # the ACS's way to the private side is the router, never the default route
        _run("ip", "route", "add", f"10.200.{n}.4/30", "via", f"10.200.{n}.2")
        self.steps.insert(0, ["ip", "route", "del", f"10.200.{n}.4/30"])
        _run("ip", "netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = f"""
        table ip nat {{
            chain postrouting {{
                type nat hook postrouting priority srcnat; policy accept;
                oifname "{up_peer}" masquerade
            }}
        }}
        table inet filter {{
            chain forward {{
                type filter hook forward priority filter; policy drop;
                ct state established,related accept
                iifname "{lan}" oifname "{up_peer}" accept
            }}
        }}
        """
        proc = subprocess.run(
            ["ip", "netns", "exec", self.router, "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nft: {proc.stderr.strip()}")

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.home]

    def close(self) -> None:
        for step in self.steps:  # best effort: every step, even after one fails
            subprocess.run(step, capture_output=True, timeout=10)
        self.steps.clear()


def make_nat() -> Nat:
    reason = why_not()
    if reason is not None:
        raise NetnsUnavailable(reason)
    pid = os.getpid()
    nat = Nat(tag=f"h8n{pid % 100000}", net=20 + pid % 200)
    try:
        nat.build()
    except Exception as exc:
        nat.close()
        raise NetnsUnavailable(f"cannot build the NAT: {exc}") from exc
    return nat
