"""The simulator runtime without a network: back-off, fault profiles, event
bookkeeping, answers to ACS requests, the firmware image format, Digest checks."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
from click.testing import CliRunner

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, parse_envelope, serialize_envelope
from cpe_simulator.auth import DigestChecker
from cpe_simulator.cli import main
from cpe_simulator.cpe import SimulatedCpe, odd_prefixes
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.firmware import BadImage, make_image, verify_image
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import (
    PROFILES,
    ProfileError,
    Timing,
    parse_profiles,
    profile_values,
    profiles_for,
    retry_wait_range,
)
from cpe_simulator.tree import ParameterTree

# ------------------------------------------------------------------ TR-069 3.2.1.1 back-off


def test_retry_wait_follows_the_spec_table_with_defaults() -> None:
    # TR-069 Table 3 with m=5 s, k=2: 5-10 s, 10-20 s, 20-40 s ... 2560-5120 s from the 10th
    t = Timing()
    assert retry_wait_range(1, t) == (5.0, 10.0)
    assert retry_wait_range(2, t) == (10.0, 20.0)
    assert retry_wait_range(3, t) == (20.0, 40.0)
    assert retry_wait_range(10, t) == (2560.0, 5120.0)
    assert retry_wait_range(11, t) == retry_wait_range(10, t)
    assert retry_wait_range(1000, t) == (2560.0, 5120.0)


def test_retry_wait_uses_configured_m_and_k() -> None:
    t = Timing(retry_min_wait_s=0.5, retry_multiplier=3.0)
    assert retry_wait_range(1, t) == (0.5, 1.5)
    assert retry_wait_range(4, t) == (0.5 * 27, 0.5 * 81)
    # no retry yet counts as the first: never a zero wait
    assert retry_wait_range(0, t) == (0.5, 1.5)


# ------------------------------------------------------------------ profiles


def test_parse_profiles_reads_names_and_shares() -> None:
    assert parse_profiles("drop:0.1, slow:0.25,brick") == {"drop": 0.1, "slow": 0.25, "brick": 1.0}
    assert parse_profiles("") == {}
    assert parse_profiles(None) == {}
    assert parse_profiles(" , ") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("explode:0.1", "unknown fault profile 'explode'"),
        ("drop:lots", "must be a number"),
        ("drop:1.5", "outside 0..1"),
        ("slow:-0.1", "outside 0..1"),
    ],
)
def test_parse_profiles_rejects_bad_input_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(words)):
        parse_profiles(text)


def test_valued_network_profiles_take_a_number_and_apply_to_every_device() -> None:
    text = "nat-drop:30, udp-loss:12.5,drop:0.1"
    assert parse_profiles(text) == {"nat-drop": 1.0, "udp-loss": 1.0, "drop": 0.1}
    assert profile_values(text) == {"nat-drop": 30.0, "udp-loss": 12.5}
    assert profiles_for("ANY", parse_profiles(text)) >= {"nat-drop", "udp-loss"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nat-drop", "nat-drop needs a number of seconds, e.g. nat-drop:30"),
        ("udp-loss:many", "udp-loss needs a number of percent"),
        ("udp-loss:101", "udp-loss: 101 percent is outside 0..100"),
        ("nat-drop:0", "outside 0.1..86400"),
    ],
)
def test_valued_profiles_refuse_a_missing_or_out_of_range_number(text: str, words: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(words)):
        profile_values(text)


def test_every_profile_named_in_the_brief_exists() -> None:
    wanted = {
        "drop", "slow", "http-error", "corrupt-download", "truncated-download", "power-loss",
        "brick", "reboot-loop", "no-bootstrap", "odd-prefixes", "ignore-cookies", "new-connection",
        "reject-root-gpn", "tc-without-event", "slow-9005",
    }  # fmt: skip
    assert wanted <= set(PROFILES)


SERIALS = [f"SIM{i:08d}" for i in range(1, 10_001)]


def test_profile_selection_is_deterministic_and_near_its_share() -> None:
    shares = parse_profiles("drop:0.1,slow:0.3")
    first = [profiles_for(s, shares) for s in SERIALS]
    again = [profiles_for(s, shares) for s in SERIALS]
    assert first == again
    drop = sum("drop" in p for p in first) / len(SERIALS)
    slow = sum("slow" in p for p in first) / len(SERIALS)
    both = sum({"drop", "slow"} <= p for p in first) / len(SERIALS)
    assert 0.085 <= drop <= 0.115
    assert 0.28 <= slow <= 0.32
    # chosen independently: the overlap is about the product of the shares
    assert 0.02 <= both <= 0.04


def test_profile_selection_edges_and_stability_when_shares_grow() -> None:
    assert all(profiles_for(s, {"brick": 0.0}) == frozenset() for s in SERIALS[:500])
    assert all(profiles_for(s, {"brick": 1.0}) == {"brick"} for s in SERIALS[:500])
    # raising a share only adds devices: those already chosen stay chosen
    small = {s for s in SERIALS if profiles_for(s, {"drop": 0.05})}
    large = {s for s in SERIALS if profiles_for(s, {"drop": 0.2})}
    assert small < large
    # adding another profile does not reshuffle who gets the first one
    alone = {s for s in SERIALS if "drop" in profiles_for(s, {"drop": 0.1})}
    mixed = {s for s in SERIALS if "drop" in profiles_for(s, {"drop": 0.1, "slow": 0.5})}
    assert alone == mixed


# ------------------------------------------------------------------ event bookkeeping

_prefixes = itertools.count(1)


def make_cpe(profiles: frozenset[str] = frozenset(), model: str = "tr181-gateway") -> SimulatedCpe:
    fleet = Fleet(FleetConfig(acs_url="http://127.0.0.1:9/", serial_prefix="U"))
    serial = f"UNIT{next(_prefixes):06d}"
    tree = ParameterTree(
        load_template(model),
        Identity.from_serial(serial),
        acs_url="http://127.0.0.1:9/",
        connection_request_url=f"http://127.0.0.1:7548/cr/{serial}",
    )
    cpe = SimulatedCpe(fleet, tree, profiles)
    fleet.devices[serial] = cpe
    return cpe


def codes(inform: m.Inform) -> list[tuple[str, str]]:
    return [(e.event_code, e.command_key) for e in inform.events]


def test_first_boot_bootstraps_and_later_boots_do_not() -> None:
    cpe = make_cpe()
    cpe.power_on()
    assert cpe.state == "up"
    assert list(cpe.events) == [("0 BOOTSTRAP", ""), ("1 BOOT", "")]
    cpe.events.clear()
    cpe.bootstrapped = True  # what an acknowledged Inform does
    cpe.power_on()
    assert list(cpe.events) == [("1 BOOT", "")]


def test_no_bootstrap_quirk_never_sends_bootstrap() -> None:
    cpe = make_cpe(frozenset({"no-bootstrap"}))
    cpe.power_on()
    assert list(cpe.events) == [("1 BOOT", "")]


def test_pending_events_accumulate_once_each_and_go_into_the_inform() -> None:
    cpe = make_cpe()
    cpe.power_on()
    cpe.add_event("M Reboot", "rk")
    cpe.add_event("6 CONNECTION REQUEST")
    cpe.add_event("6 CONNECTION REQUEST")  # several knocks, one event
    cpe.add_event("M Download", "fw")
    cpe.add_event("M Download", "cfg")  # one per CommandKey
    cpe.add_event("M Download", "fw")
    cpe.add_event("1 BOOT")
    cpe.retry_count = 3
    inform = cpe._inform()
    assert codes(inform) == [
        ("0 BOOTSTRAP", ""),
        ("1 BOOT", ""),
        ("M Reboot", "rk"),
        ("6 CONNECTION REQUEST", ""),
        ("M Download", "fw"),
        ("M Download", "cfg"),
    ]
    assert inform.retry_count == 3
    assert inform.device_id.serial_number == cpe.serial
    names = {p.name for p in inform.parameter_list}
    assert "Device.DeviceInfo.SoftwareVersion" in names
    assert "Device.ManagementServer.ConnectionRequestURL" in names


def test_a_device_side_change_of_a_notified_parameter_adds_value_change() -> None:
    cpe = make_cpe()
    cpe.power_on()
    cpe.events.clear()
    # SoftwareVersion carries forced active notification in TR-181
    cpe.tree.set_value_internal("Device.DeviceInfo.SoftwareVersion", "9.9.9")
    assert cpe.tree.has_active_notification_change()
    inform = cpe._inform()
    assert codes(inform) == [("4 VALUE CHANGE", "")]
    assert ("Device.DeviceInfo.SoftwareVersion", "9.9.9") in [
        (p.name, p.value) for p in inform.parameter_list
    ]


# ------------------------------------------------------------------ answers to ACS requests


async def test_unsupported_method_is_fault_9000_and_tree_errors_keep_their_code() -> None:
    cpe = make_cpe()
    # an ACS method (the CPE implements ScheduleDownload now)
    unsupported = await cpe.answer(m.RequestDownload("1 Firmware Upgrade Image"))
    assert isinstance(unsupported, m.Fault) and unsupported.fault_code == 9000
    bad_name = await cpe.answer(m.GetParameterValues(["Device.Nope."]))
    assert isinstance(bad_name, m.Fault) and bad_name.fault_code == 9005
    bad_url = await cpe.answer(m.Download("k", "1 Firmware Upgrade Image", "ftp://127.0.0.1/x"))
    assert isinstance(bad_url, m.Fault) and bad_url.fault_code == 9013
    cancel = await cpe.answer(m.CancelTransfer("none"))
    assert isinstance(cancel, m.Fault) and cancel.fault_code == 9003


async def test_reject_root_gpn_only_refuses_the_root() -> None:
    cpe = make_cpe(frozenset({"reject-root-gpn"}))
    for path in ("", "Device."):
        answer = await cpe.answer(m.GetParameterNames(path, True))
        assert isinstance(answer, m.Fault) and answer.fault_code == 9005
    below = await cpe.answer(m.GetParameterNames("Device.DeviceInfo.", True))
    assert isinstance(below, m.GetParameterNamesResponse) and below.parameter_list
    normal = await make_cpe().answer(m.GetParameterNames("Device.", True))
    assert isinstance(normal, m.GetParameterNamesResponse)


async def test_reboot_and_downloads_wait_for_the_end_of_the_session() -> None:
    cpe = make_cpe()
    cpe.power_on()
    assert isinstance(await cpe.answer(m.Reboot("r")), m.RebootResponse)
    dl = await cpe.answer(m.Download("d", "1 Firmware Upgrade Image", "http://127.0.0.1:9/f"))
    assert isinstance(dl, m.DownloadResponse) and dl.status == 1
    assert cpe.state == "up"  # nothing happens during the session itself
    assert len(cpe.after_session) == 2
    assert [(t.command_key, t.state) for t in cpe.transfers] == [("d", 1)]
    listed = await cpe.answer(m.GetQueuedTransfers())
    assert isinstance(listed, m.GetQueuedTransfersResponse)
    assert [(t.command_key, t.state) for t in listed.transfer_list] == [("d", 1)]
    # once a transfer runs, it can no longer be cancelled (TR-069 A.4.1.4)
    cpe.transfers[0].state = 2
    refused = await cpe.answer(m.CancelTransfer("d"))
    assert isinstance(refused, m.Fault) and refused.fault_code == 9021


def test_rpc_methods_the_cpe_lists_are_answered_by_it() -> None:
    from cpe_simulator.cpe import CPE_RPCS

    assert {"GetParameterValues", "Download", "Upload", "ScheduleInform"} <= set(CPE_RPCS)
    assert "ScheduleDownload" in CPE_RPCS  # cpe_simulator.scheduled answers it


# ------------------------------------------------------------------ wire quirks


def test_odd_prefixes_rewrites_the_bytes_but_not_the_message() -> None:
    msg = m.GetParameterValuesResponse([m.ParameterValueStruct("Device.X", "1", "xsd:string")])
    plain = serialize_envelope(Envelope(msg, cwmp_id="42"))
    odd = odd_prefixes(plain)
    assert odd != plain
    assert b"<cwmp:GetParameterValuesResponse" not in odd
    assert b"<GetParameterValuesResponse xmlns=" in odd
    assert b"SOAP-ENV:Envelope" in odd
    env = parse_envelope(odd)
    assert env is not None and env.cwmp_id == "42"
    assert env.body == msg


# ------------------------------------------------------------------ firmware images


def test_firmware_image_round_trip_and_corruption() -> None:
    image = make_image("4.2.0", 1000, seed=b"s" * 32)
    assert image.startswith(b"CPE-SIM-FIRMWARE version=4.2.0 sha256=")
    assert verify_image(image) == "4.2.0"
    flipped = image[:-1] + bytes([image[-1] ^ 1])
    with pytest.raises(BadImage, match="SHA-256"):
        verify_image(flipped)
    with pytest.raises(BadImage):
        verify_image(image[:-10])  # truncated
    with pytest.raises(BadImage, match="header"):
        verify_image(b"MZ\x90\x00 not ours")


# ------------------------------------------------------------------ connection-request Digest


def _digest_header(challenge: str, user: str, password: str, uri: str, nc: str = "00000001") -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge[7:]))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{user}:{fields['realm']}:{password}")
    ha2 = md5(f"GET:{uri}")
    resp = md5(f"{ha1}:{fields['nonce']}:{nc}:abc:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{fields["realm"]}", nonce="{fields["nonce"]}", '
        f'uri="{uri}", qop=auth, nc={nc}, cnonce="abc", response="{resp}", algorithm=MD5'
    )


def test_digest_checker_accepts_the_right_answer_only() -> None:
    checker = DigestChecker()
    challenge = checker.challenge()
    good = _digest_header(challenge, "cr", "secret", "/cr/SIM1")
    assert checker.check("GET", good, "cr", "secret")
    assert not checker.check(
        "GET", _digest_header(challenge, "cr", "wrong", "/cr/SIM1"), "cr", "secret"
    )
    assert not checker.check("GET", good, "other-user", "secret")
    assert not checker.check("POST", good, "cr", "secret")  # method is part of the hash
    assert not checker.check("GET", None, "cr", "secret")
    assert not checker.check("GET", "Basic Y3I6c2VjcmV0", "cr", "secret")
    # a nonce this process did not issue is refused even with a matching hash
    forged = DigestChecker().challenge()
    assert not checker.check(
        "GET", _digest_header(forged, "cr", "secret", "/cr/SIM1"), "cr", "secret"
    )


def test_digest_nonces_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    import cpe_simulator.auth as auth

    checker = DigestChecker()
    header = _digest_header(checker.challenge(), "cr", "s", "/cr/A")
    assert checker.check("GET", header, "cr", "s")
    later = auth.time.time() + auth.NONCE_LIFETIME_S + 5
    monkeypatch.setattr(auth.time, "time", lambda: later)
    assert not checker.check("GET", header, "cr", "s")


# ------------------------------------------------------------------ CLI


def test_cli_refuses_unknown_profiles_with_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["--acs-url", "http://127.0.0.1:9/", "--faults", "boom"])
    assert result.exit_code == 2
    assert "unknown fault profile 'boom'" in result.output


def test_cli_help_lists_the_options_of_the_brief() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--acs-url", "--devices", "--model", "--serial-prefix", "--oui", "--product-class",
        "--software-version", "--periodic-interval", "--ramp", "--faults", "--username",
        "--password", "--cr-host", "--cr-port", "--duration",
    ):  # fmt: skip
        assert option in result.output


async def test_a_fleet_with_kept_state_powers_on_configured_and_without_bootstrap() -> None:
    ms = "Device.ManagementServer."
    config = FleetConfig(
        acs_url="http://127.0.0.1:9/",
        devices=2,
        serial_prefix="KEPT",
        cr_port=0,
        state={"KEPT00000001": {ms + "ConnectionRequestUsername": "KEPT00000001"}},
    )
    fleet = Fleet(config)
    await fleet.start()
    try:
        kept, fresh = fleet.devices["KEPT00000001"], fleet.devices["KEPT00000002"]
        (value,) = kept.tree.get_parameter_values([ms + "ConnectionRequestUsername"])
        assert value.value == "KEPT00000001"
        assert kept.bootstrapped and ("0 BOOTSTRAP", "") not in kept.events
        assert ("0 BOOTSTRAP", "") in fresh.events  # a device without state is new
        # the kept value is configuration, not a change to notify at the next Inform
        assert not kept.tree.has_value_changes()
        # the bench builds the same tree the fleet does
        assert config.tree_of(kept.tree.template, 2, 1).identity == fresh.tree.identity
    finally:
        await fleet.stop()
