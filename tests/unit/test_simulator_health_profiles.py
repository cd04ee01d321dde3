"""The simulator's health profiles: parameters, and what an upgrade breaks."""

from __future__ import annotations

import pytest

from cpe_simulator.profiles import ProfileError, parse_profiles, profile_parameters


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
