"""The simulator's health profiles: parameters, and what an upgrade breaks."""

from __future__ import annotations

import pytest

from cpe_simulator import health_faults
from cpe_simulator.profiles import ProfileError, parse_profiles, profile_parameters
from tests.unit.test_sim_runtime import make_cpe


def test_reboot_after_upgrade_takes_hours_not_a_share() -> None:
    shares = parse_profiles("reboot-after-upgrade:6,wan-down-after-upgrade:0.5")
    assert shares == {"reboot-after-upgrade": 1.0, "wan-down-after-upgrade": 0.5}
    assert profile_parameters("reboot-after-upgrade:6") == {"reboot-after-upgrade": 6.0}
    assert profile_parameters("reboot-after-upgrade") == {"reboot-after-upgrade": 1.0}
    assert profile_parameters("silent-after-upgrade,wifi-clients-drop") == {}


@pytest.mark.parametrize("text", ["reboot-after-upgrade:0", "reboot-after-upgrade:soon"])
def test_bad_hours_are_refused(text: str) -> None:
    with pytest.raises(ProfileError, match="reboot-after-upgrade"):
        parse_profiles(text)


WAN = "Device.IP.Interface.1.Status"
CLIENTS = "Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries"


def test_an_upgrade_breaks_the_wan_and_the_wifi_clients() -> None:
    cpe = make_cpe(frozenset({"wan-down-after-upgrade", "wifi-clients-drop"}))
    health_faults.at_first_boot(cpe)
    assert (cpe.tree.value(WAN), cpe.tree.value(CLIENTS)) == ("Up", "2")
    health_faults.after_upgrade(cpe)
    assert (cpe.tree.value(WAN), cpe.tree.value(CLIENTS)) == ("Down", "0")


def test_a_device_without_the_profiles_keeps_its_values() -> None:
    cpe = make_cpe()
    health_faults.at_first_boot(cpe)
    health_faults.after_upgrade(cpe)
    assert (cpe.tree.value(WAN), cpe.tree.value(CLIENTS)) == ("Up", "0")
    assert not cpe.after_session and not cpe.silent


async def test_silent_after_upgrade_falls_silent_after_its_next_session() -> None:
    cpe = make_cpe(frozenset({"silent-after-upgrade"}))
    health_faults.after_upgrade(cpe)
    assert not cpe.silent  # the Inform reporting the new version still goes out
    (action,) = cpe.after_session
    await action()
    assert cpe.silent
