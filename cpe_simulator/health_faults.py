"""What a firmware upgrade breaks on a device with a health profile.

Each profile exercises one health signal of the ACS's soak: an unexpected
reboot (``1 BOOT`` with no ``M Reboot`` or ``M Download``), silence (no more
periodic Informs), a KPI going bad (the IP interface Down, no Wi-Fi clients).
Times are in simulated hours of ``Timing.hour_s`` seconds, so a test soaks
for seconds what production watches for hours.
"""

from __future__ import annotations

from typing import Any

from cpe_simulator.profiles import profile_parameters

# a cpe_simulator.cpe.SimulatedCpe (which imports this module: no import back)
SimulatedCpe = Any

WIFI_CLIENTS_BEFORE = "2"


def _set(cpe: SimulatedCpe, relative: str, value: str) -> None:
    """Set a value as the device itself would (notified if asked), where the
    data model has it."""
    path = f"{cpe.tree.root}{relative}"
    try:
        cpe.tree.set_value_internal(path, value)
    except Exception:  # noqa: BLE001 - a data model without the parameter: nothing to break
        cpe.fleet.count("health_profile_skipped", relative)


def _wan(cpe: SimulatedCpe) -> str:
    return (
        "IP.Interface.1.Status"
        if cpe.tree.root == "Device."
        else "WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ConnectionStatus"
    )


def _wifi_clients(cpe: SimulatedCpe) -> str:
    return (
        "WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries"
        if cpe.tree.root == "Device."
        else "LANDevice.1.WLANConfiguration.1.TotalAssociations"
    )


def at_first_boot(cpe: SimulatedCpe) -> None:
    """Before any upgrade: a device that will lose its Wi-Fi clients has some."""
    if cpe.has("wifi-clients-drop"):
        _set(cpe, _wifi_clients(cpe), WIFI_CLIENTS_BEFORE)


def after_upgrade(cpe: SimulatedCpe) -> None:
    """The new firmware booted (before its first Inform)."""
    if cpe.has("wan-down-after-upgrade"):
        _set(cpe, _wan(cpe), "Down" if cpe.tree.root == "Device." else "Disconnected")
    if cpe.has("wifi-clients-drop"):
        _set(cpe, _wifi_clients(cpe), "0")
    if cpe.has("silent-after-upgrade"):

        async def fall_silent() -> None:
            # after the session that reported the new version: the install is
            # verified, then nothing more is heard
            cpe.silent = True
            cpe.fleet.count("silent", "after_upgrade")

        cpe.after_session.append(fall_silent)
    if cpe.has("reboot-after-upgrade"):
        hours = profile_parameters(cpe.fleet.config.faults).get("reboot-after-upgrade", 1.0)
        delay = hours * cpe.fleet.timing.hour_s
        cpe.fleet.later(delay, _reboot_every(cpe, delay, cpe.tree.software_version))


async def _reboot_every(cpe: SimulatedCpe, delay: float, version: str) -> None:
    """Reboot by itself (no event but 1 BOOT) every ``delay`` seconds while the
    upgraded firmware runs."""
    if cpe.tree.software_version != version or cpe.state != "up" or cpe.fleet.closing:
        return
    cpe.fleet.count("reboot", "after_upgrade")
    await cpe.reboot()
    cpe.fleet.later(delay, _reboot_every(cpe, delay, version))
