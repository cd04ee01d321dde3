"""The health soak's pure rules: definitions, signals, verdicts, the comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from acs.core import health as H
from acs.core.campaigns import Amount, Stage, StageCounts, decide

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


def test_a_kpi_that_does_not_compile_is_refused_with_its_position() -> None:
    with pytest.raises(H.HealthError) as bad:
        H.parse_spec({"kpis": [{"condition": "Device.IP.Interface.1.Status = "}]})
    assert bad.value.path == "kpis[0].condition"
    assert "position 31" in bad.value.message


def test_a_kpi_must_read_a_reported_parameter() -> None:
    with pytest.raises(H.HealthError, match="at least one parameter"):
        H.parse_spec({"kpis": [{"condition": 'SoftwareVersion = "2.0"'}]})


def test_definition_defaults_and_round_trip() -> None:
    spec = H.parse_spec(
        {
            "faultRate": "25%",
            "kpis": [
                {"condition": "Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries >= 1"}
            ],
        }
    )
    assert (spec.reboots, spec.missed_informs, spec.control_group) == (0, 3, 20)
    assert spec.kpis[0].parameters == ("Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries",)
    assert H.parse_spec(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"faultRate": "3"}, "faultRate"),
        ({"faultRate": "120%"}, "faultRate"),
        ({"reboots": -1}, "reboots"),
        ({"missedInforms": 0}, "missedInforms"),
        ({"margin": "2"}, "margin"),
    ],
)
def test_bad_thresholds_name_their_field(raw: dict[str, object], path: str) -> None:
    with pytest.raises(H.HealthError) as bad:
        H.parse_spec(raw)
    assert bad.value.path == path


def test_soaks_that_can_never_complete_are_refused() -> None:
    with pytest.raises(H.HealthError, match="could never complete") as bad:
        H.check_soaks([{"size": "10%", "soak": 60}, {"size": "100%", "soak": 40 * 86400}], True)
    assert bad.value.path == "stages[1].soak"
    with pytest.raises(H.HealthError, match="never be watched"):
        H.check_soaks([{"size": "100%"}], has_health=True)
    H.check_soaks([{"size": "100%"}], has_health=False)  # today's behaviour


def test_a_boot_the_acs_caused_is_no_signal() -> None:
    assert H.unexpected_boot(["1 BOOT"])
    assert H.unexpected_boot(["1 BOOT", "2 PERIODIC"])
    assert not H.unexpected_boot(["1 BOOT", "M Reboot"])
    assert not H.unexpected_boot(["1 BOOT", "7 TRANSFER COMPLETE", "M Download"])
    assert not H.unexpected_boot(["0 BOOTSTRAP", "1 BOOT"])
    assert not H.unexpected_boot(["2 PERIODIC"])


def test_missed_intervals_count_from_the_last_inform() -> None:
    assert H.missed_intervals(T0, T0, T0 + timedelta(seconds=250), 60) == 4
    assert H.missed_intervals(None, T0, T0 + timedelta(seconds=59), 60) == 0
    assert H.missed_intervals(T0, T0, T0 + timedelta(days=1), None) == 0


def obs(**kw: object) -> H.Observation:
    base: dict[str, object] = {"since": T0, "last_heard": T0, "interval_s": 60}
    return H.Observation(**(base | kw))  # type: ignore[arg-type]


def test_verdicts_soaking_then_healthy_unhealthy_at_once() -> None:
    spec = H.parse_spec({"reboots": 0, "missedInforms": 3})
    until = T0 + timedelta(hours=6)
    assert H.verdict(spec, obs(), T0 + timedelta(seconds=30), until)[0] == "soaking"
    assert H.verdict(spec, obs(last_heard=until), until, until)[0] == "healthy"
    state, signals = H.verdict(spec, obs(boot_events=(("1 BOOT",),)), T0, until)
    assert state == "unhealthy"
    assert [s.name for s in signals if s.tripped] == [H.REBOOTS]
    state, signals = H.verdict(spec, obs(), T0 + timedelta(seconds=241), until)
    assert state == "unhealthy" and signals[1].value == "4 intervals"


def test_fault_rate_waits_for_enough_jobs() -> None:
    spec = H.parse_spec({"reboots": None, "faultRate": "50%", "minJobs": 2})
    until = T0 + timedelta(hours=1)
    assert H.verdict(spec, obs(jobs=1, job_faults=1), T0, until)[0] == "soaking"
    assert H.verdict(spec, obs(jobs=2, job_faults=1), T0, until)[0] == "soaking"
    state, signals = H.verdict(spec, obs(jobs=3, job_faults=2), T0, until)
    assert state == "unhealthy" and signals[-1].value == "2 of 3 jobs"


def test_kpi_signal_carries_the_values_read() -> None:
    spec = H.parse_spec(
        {"reboots": None, "kpis": [{"condition": 'Device.IP.Interface.1.Status = "Up"'}]}
    )
    seen = obs(kpi_failures=(1,), kpi_values={"Device.IP.Interface.1.Status": "Down"})
    state, signals = H.verdict(spec, seen, T0, T0 + timedelta(hours=1))
    assert state == "unhealthy"
    assert "'Down'" in signals[-1].detail and signals[-1].limit == "at most 0"


def test_the_comparison_excuses_what_the_control_group_shares() -> None:
    dip = H.Compared("any", H.Share(3, 3), H.Share(0, 3), H.Share(3, 3))
    assert dip.excess(Fraction(0)) == 0
    bad = H.Compared("any", H.Share(3, 4), H.Share(0, 4), H.Share(1, 10))
    assert bad.excess(Fraction(0)) == 3  # 10% of 4 explains none of them
    assert bad.excess(Fraction(50)) == 1  # 60% of 4 explains two
    before = H.Compared("any", H.Share(2, 4), H.Share(2, 4), H.Share(0, 10))
    assert before.excess(Fraction(0)) == 0  # they were as unhealthy before the upgrade


def stages() -> list[Stage]:
    one = Amount.parse("1")
    return [
        Stage(Amount.parse("50%"), failure=one, on_success="pause"),
        Stage(Amount.parse("100%")),
    ]


def test_soaking_devices_hold_the_stage_and_unhealthy_ones_halt_it() -> None:
    counts = {0: StageCounts(2, {"succeeded": 2}), 1: StageCounts(2, {"pending": 2})}
    soaking = {
        0: H.StageHealth(
            soaking=2, comparison=H.Compared("any", H.Share(0, 2), H.Share(0, 0), H.Share(0, 2))
        )
    }
    adjusted, _ = H.adjusted_counts(stages(), [60, 0], counts, soaking, Fraction(0), {})
    assert decide(stages(), 0, adjusted).action == "none"
    sick = {
        0: H.StageHealth(
            soaking=1,
            unhealthy=1,
            comparison=H.Compared("any", H.Share(1, 2), H.Share(0, 0), H.Share(0, 2)),
        )
    }
    adjusted, counted = H.adjusted_counts(stages(), [60, 0], counts, sick, Fraction(0), {})
    decision = decide(stages(), 0, adjusted)
    assert (decision.action, decision.failure, counted) == ("pause", True, {0: 1})
    # an operator who resumed acknowledged that one: only a new one halts again
    assert decide(stages(), 0, adjusted, {0: 1}).action == "none"
    shared = {
        0: H.StageHealth(
            healthy=1,
            unhealthy=1,
            comparison=H.Compared("any", H.Share(1, 2), H.Share(0, 0), H.Share(2, 2)),
        )
    }
    adjusted, _ = H.adjusted_counts(stages(), [60, 0], counts, shared, Fraction(0), {})
    decision = decide(stages(), 0, adjusted)
    assert decision.action == "pause" and not decision.failure
    assert "reached its success threshold" in decision.reason


def test_a_stage_without_soak_keeps_todays_rules() -> None:
    counts = {0: StageCounts(2, {"succeeded": 2})}
    adjusted, counted = H.adjusted_counts(stages(), [0, 0], counts, {}, Fraction(0), {})
    assert adjusted == counts and counted == {}
