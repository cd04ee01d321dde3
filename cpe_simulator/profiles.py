"""Fault-injection profiles and CPE quirks, chosen per device from its serial.

``--faults drop:0.1,slow:0.2,no-bootstrap:0.05`` gives each named behaviour to
that share of the fleet. The choice hashes the serial with the profile name,
so a rerun with the same serials picks the same devices, and the shares are
independent of each other. The network profiles in VALUED take a number
instead of a share (``nat-drop:30,udp-loss:50``) and apply to every device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# What each profile does (the runtime acts on these names).
PROFILES: dict[str, str] = {
    "drop": "closes the connection in the middle of some sessions",
    "slow": "answers each ACS request after a delay",
    "http-error": "sends a garbage body instead of some answers",
    "corrupt-download": "downloads arrive corrupted (TransferComplete fault 9018)",
    "truncated-download": "downloads stop short of their size (fault 9017)",
    "power-loss": "loses power while flashing: back on the old version, no TransferComplete",
    "brick": "never comes back after a firmware download or a reboot",
    "reboot-loop": "reboots after every session",
    "no-bootstrap": "never sends 0 BOOTSTRAP",
    "odd-prefixes": "uses unusual namespace prefixes and no prefix on the RPC element",
    "ignore-cookies": "never sends the session cookie back",
    "new-connection": "opens a new TCP connection for every POST of a session (TR-069 allows it)",
    "reject-root-gpn": "refuses GetParameterNames on the root object (9005)",
    "no-partial-gpv": "refuses a partial path (one ending in '.') in GetParameterValues"
    " (9005), as some CPEs do: the ACS must name every parameter",
    "tc-without-event": "sends TransferComplete without the 7 TRANSFER COMPLETE event",
    "slow-9005": "answers unknown parameter names with 9005 only after a delay",
    "autonomous-du": "installs a module on its own and sends AutonomousDUStateChangeComplete",
    "nat-rebind": "its NAT gives it a new public UDP port every few STUN keep-alives",
    "diagnostics-hang": "accepts a diagnostics test and never completes it",
    "diagnostics-unresolvable": "diagnostics resolve no host name (Error_CannotResolveHostName)",
    "request-download": "sends RequestDownload (1 Firmware Upgrade Image) after each boot",
    "kicked": "sends Kicked (as its web portal would) after each boot",
    "autonomous-transfer": "takes a firmware image on its own after its first session and "
    "reports AutonomousTransferComplete",
    "nat-drop": "nat-drop:SECONDS: its NAT forgets the UDP binding after that long without"
    " outgoing traffic; knocks to it are lost until the next keep-alive makes a new one",
    "udp-loss": "udp-loss:PERCENT: that share of incoming UDP connection requests is lost"
    " (spread evenly, the first one lost, so runs repeat)",
    # health after a firmware upgrade (cpe_simulator/health_faults.py); times in
    # simulated hours, Timing.hour_s long (--time-scale)
    "reboot-after-upgrade": "reboots by itself every HOURS hours after a firmware upgrade"
    " (reboot-after-upgrade:HOURS, default 1)",
    "wan-down-after-upgrade": "its IP interface 1 stays Down after a firmware upgrade",
    "silent-after-upgrade": "stops its periodic Informs once it has reported the new firmware",
    "wifi-clients-drop": "has Wi-Fi clients before a firmware upgrade and none after it",
}
# profiles whose number is a value, not a share: (what it is, lowest, highest, example)
VALUED: dict[str, tuple[str, float, float, int]] = {
    "nat-drop": ("seconds", 0.1, 86400.0, 30),
    "udp-loss": ("percent", 0.0, 100.0, 50),
}
# profiles whose number after the colon is a parameter, not a share: every device has them
PARAMETERIZED: dict[str, float] = {"reboot-after-upgrade": 1.0}


class ProfileError(ValueError):
    pass


def parse_profiles(text: str | None) -> dict[str, float]:
    """``"drop:0.1,slow"`` -> {"drop": 0.1, "slow": 1.0}; a VALUED profile has share 1."""
    return _parse(text)[0]


def profile_values(text: str | None) -> dict[str, float]:
    """``"nat-drop:30,drop:0.1"`` -> {"nat-drop": 30.0}: the VALUED profiles' numbers."""
    return _parse(text)[1]


def _parse(text: str | None) -> tuple[dict[str, float], dict[str, float]]:
    shares: dict[str, float] = {}
    valued: dict[str, float] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, share_text = item.partition(":")
        if name not in PROFILES:
            raise ProfileError(f"unknown fault profile {name!r}; known: {', '.join(PROFILES)}")
        if name in PARAMETERIZED:
            _parameter(name, share_text)
            shares[name] = 1.0
            continue
        if name in VALUED:
            what, low, high, example = VALUED[name]
            try:
                number = float(share_text)
            except ValueError:
                why = f"{name} needs a number of {what}, e.g. {name}:{example}"
                raise ProfileError(why) from None
            if not low <= number <= high:
                raise ProfileError(f"{name}: {number:g} {what} is outside {low:g}..{high:g}")
            shares[name], valued[name] = 1.0, number
            continue
        try:
            share = float(share_text) if share_text else 1.0
        except ValueError:
            raise ProfileError(f"{name}: share must be a number from 0 to 1") from None
        if not 0.0 <= share <= 1.0:
            raise ProfileError(f"{name}: share {share} is outside 0..1")
        shares[name] = share
    return shares, valued


def _parameter(name: str, text: str) -> float:
    if not text:
        return PARAMETERIZED[name]
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{name}: the number after the colon is in hours") from None
    if not value > 0:
        raise ProfileError(f"{name}: hours must be more than 0")
    return value


def profile_parameters(text: str | None) -> dict[str, float]:
    """``"reboot-after-upgrade:6"`` -> {"reboot-after-upgrade": 6.0} (defaults filled in)."""
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        name, _, value = item.strip().partition(":")
        if name in PARAMETERIZED:
            out[name] = _parameter(name, value)
    return out


def _unit(serial: str, name: str) -> float:
    digest = hashlib.blake2s(f"{name}/{serial}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def profiles_for(serial: str, shares: dict[str, float]) -> frozenset[str]:
    return frozenset(name for name, share in shares.items() if _unit(serial, name) < share)


@dataclass(frozen=True, slots=True)
class Timing:
    """Delays of the slow behaviours, and TR-069 3.2.1.1 retry back-off."""

    slow_s: float = 1.0
    reboot_s: float = 2.0
    retry_min_wait_s: float = 5.0  # m in TR-069 3.2.1.1
    retry_multiplier: float = 2.0  # k/1000 in TR-069 3.2.1.1
    # one simulated hour of the health profiles (reboot-after-upgrade:HOURS...):
    # 3600 s in production-like runs, a second or less in tests (--time-scale)
    hour_s: float = 3600.0


def retry_wait_range(retry_count: int, timing: Timing) -> tuple[float, float]:
    """TR-069 3.2.1.1: after the n-th failed session wait between m*k^(n-1) and m*k^n
    seconds (k as a multiplier), with n capped at 10."""
    n = max(1, min(retry_count, 10))
    m, k = timing.retry_min_wait_s, timing.retry_multiplier
    return m * k ** (n - 1), m * k**n
