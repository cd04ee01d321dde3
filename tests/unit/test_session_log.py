"""Masking and bounding of session transcripts (acs/core/session_log.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from acs.core.session_log import MASK, MAX_ENTRIES, Transcript, elided, is_quiet, mask_body
from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_2, Envelope, parse_envelope, serialize_envelope


def envelope_bytes(message: m.Message) -> bytes:
    return serialize_envelope(Envelope(body=message, cwmp_id="7", cwmp_ns=CWMP_NS_1_2))


def pv(name: str, value: str) -> m.ParameterValueStruct:
    return m.ParameterValueStruct(name, value, "xsd:string")


def test_secret_parameters_are_masked_and_the_rest_kept() -> None:
    body = envelope_bytes(
        m.SetParameterValues(
            [
                pv("Device.WiFi.AccessPoint.1.Security.KeyPassphrase", "wpa-secret"),
                pv("Device.WiFi.AccessPoint.1.Security.PreSharedKey", "psk-secret"),
                pv("InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.WEPKey.1.WEPKey", "wep"),
                pv("Device.ManagementServer.ConnectionRequestPassword", "cr-secret"),
                pv("Device.X_ACME_Admin.passphrase", "vendor-secret"),  # any letter case
                pv("Device.Users.User.1.Password", ""),  # empty: nothing to hide
                pv("Device.WiFi.SSID.1.SSID", "my-network"),
                pv("Device.Users.User.1.Username", "admin"),
            ],
            "key-1",
        )
    )
    text = mask_body(body)
    for secret in ("wpa-secret", "psk-secret", ">wep<", "cr-secret", "vendor-secret"):
        assert secret not in text
    parsed = parse_envelope(text.encode())
    assert parsed is not None and parsed.cwmp_id == "7"
    assert isinstance(parsed.body, m.SetParameterValues)
    values = {p.name: (p.value, p.xsd_type) for p in parsed.body.parameter_list}
    assert values["Device.WiFi.AccessPoint.1.Security.KeyPassphrase"] == (MASK, "xsd:string")
    assert values["Device.Users.User.1.Password"] == ("", "xsd:string")
    assert values["Device.WiFi.SSID.1.SSID"] == ("my-network", "xsd:string")
    assert values["Device.Users.User.1.Username"] == ("admin", "xsd:string")
    assert parsed.body.parameter_key == "key-1"


def test_download_password_and_url_credentials_are_masked() -> None:
    body = envelope_bytes(
        m.Download(
            command_key="fw-1",
            file_type="1 Firmware Upgrade Image",
            url="ftp://fwuser:ftp-secret@files.example.net/fw.bin",
            username="files",
            password="files-secret",
            file_size=1000,
            target_file_name="",
            delay_seconds=0,
            success_url="",
            failure_url="",
        )
    )
    text = mask_body(body)
    assert "files-secret" not in text and "ftp-secret" not in text and "fwuser" not in text
    parsed = parse_envelope(text.encode())
    assert parsed is not None and isinstance(parsed.body, m.Download)
    assert parsed.body.password == MASK and parsed.body.username == "files"
    assert parsed.body.url == f"ftp://{MASK}@files.example.net/fw.bin"


def test_a_message_without_secrets_is_stored_exactly_as_it_came() -> None:
    body = envelope_bytes(m.GetParameterValues(["Device.DeviceInfo.SoftwareVersion"]))
    assert mask_body(body) == body.decode()


def test_broken_xml_is_masked_by_pattern() -> None:
    cut_short = (
        b"<Envelope><Body><GetParameterValuesResponse><ParameterList>"
        b"<ParameterValueStruct><Name>Device.Users.User.1.Password</Name>"
        b'<Value xsi:type="xsd:string">admin-pw</Value></ParameterValueStruct>'
        b"<ParameterValueStruct><Value>flipped-order-secret</Value>"
        b"<Name>Device.WiFi.AccessPoint.2.Security.KeyPassphrase</Name></ParameterValueStruct>"
        b"<ParameterValueStruct><Name>Device.WiFi.AccessPoint.3.Security.PreSharedKey</Name>"
        b"<Value><![CDATA[cdata-secret]]></Value></ParameterValueStruct>"
        b"<Download><Password>dl-secret</Password><URL>http://u:url-secret@h/f</URL>"
        b"<ParameterValueStruct><Name>X.WEPKey</Name><Value>cut-in-the-midd"
    )
    text = mask_body(cut_short)
    leaks = ("admin-pw", "flipped-order", "cdata-secret", "dl-secret", "url-secret", "cut-in")
    for secret in leaks:
        assert secret not in text, secret
    assert text.count(MASK) == 6
    assert "Device.Users.User.1.Password" in text  # names stay: they say what was there


def test_a_doctype_is_never_expanded_while_masking() -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "expanded">]>'
        b"<Envelope><Body><Password>&e;-secret</Password></Body></Envelope>"
    )
    text = mask_body(hostile)
    assert "secret" not in text and "expanded</" not in text


def test_nul_bytes_and_bad_utf8_become_replacement_characters() -> None:
    text = mask_body(b"<x>a\x00b\xffc</x>")
    assert "\x00" not in text and text == "<x>a\ufffdb\ufffdc</x>"


def test_transcript_bounds_stored_bytes_and_masks_before_cutting() -> None:
    t = Transcript(max_bytes=300, events=["2 PERIODIC"])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    small = envelope_bytes(m.GetParameterValues(["Device.DeviceInfo.UpTime"]))
    t.add("out", small[:100], status=200, rpc="GetParameterValues", at=at)
    secret_tail = b"x" * 180 + b"<Password>very-long-secret-value</Password>"
    t.add("in", secret_tail, rpc="Download", at=at)
    t.add("in", b"", at=at)
    t.add("out", small, status=200, at=at)
    assert t.message_count == 4 and len(t.messages) == 4
    assert t.stored_bytes == 300 and t.truncated
    first, second, empty, late = t.messages
    assert first["body"] == small[:100].decode() and "truncated" not in first
    # the cut falls after the secret's start, but the secret was masked first
    assert "very-long" not in second["body"] and second["truncated"]
    assert "[truncated:" in second["body"] and second["size"] == len(secret_tail)
    assert empty["body"] == "" and empty["size"] == 0 and "truncated" not in empty
    assert late["body"].startswith("[truncated:") and late["size"] == len(small)
    assert first["at"] == "2026-01-01T00:00:00Z" and first["status"] == 200


def test_a_transcript_stops_listing_messages_past_its_entry_limit() -> None:
    t = Transcript(max_bytes=10_000)
    for _ in range(MAX_ENTRIES + 5):
        t.add("in", b"")
    assert len(t.messages) == MAX_ENTRIES
    assert t.message_count == MAX_ENTRIES + 5 and t.truncated


def _periodic(*extra: tuple[str, bytes, int | None, str | None]) -> Transcript:
    t = Transcript(max_bytes=1 << 20, events=["2 PERIODIC"])
    t.add("in", b"<Inform/>", rpc="Inform")
    t.add("out", b"<InformResponse/>", status=200, rpc="InformResponse")
    for direction, body, status, rpc in extra:
        t.add(direction, body, status=status, rpc=rpc)
    t.add("in", b"")
    t.add("out", b"", status=204)
    return t


def test_a_periodic_inform_answered_and_ended_is_quiet_and_loses_only_its_bodies() -> None:
    t = _periodic()
    assert is_quiet(t.events, t.messages)
    kept = elided(t.messages)
    assert [(x["direction"], x["rpc"], x["status"], x["size"]) for x in kept] == [
        (x["direction"], x["rpc"], x["status"], x["size"]) for x in t.messages
    ]
    assert all(x["body"] == "" and "quiet periodic session" in x["note"] for x in kept)
    assert t.messages[0]["body"] == "<Inform/>"  # the transcript itself is untouched


def test_anything_but_a_periodic_inform_makes_a_session_eventful() -> None:
    for events in (["2 PERIODIC", "4 VALUE CHANGE"], ["1 BOOT"], ["6 CONNECTION REQUEST"], []):
        t = _periodic()
        assert not is_quiet(events, t.messages), events
    # an ACS request, a CPE request, a fault answer
    asked = _periodic(("out", b"<GetParameterValues/>", 200, "GetParameterValues"))
    told = _periodic(("in", b"<TransferComplete/>", None, "TransferComplete"))
    refused = _periodic(("out", b"<Fault/>", 500, "Fault"))
    for t in (asked, told, refused):
        assert not is_quiet(t.events, t.messages)
    # a message refused unread carries a note: not quiet either
    noted = _periodic()
    noted.add("in", b"", note="body not read: too large")
    assert not is_quiet(noted.events, noted.messages)


def test_a_parsed_answer_with_only_empty_secrets_is_kept_unparsed_and_a_set_one_masked() -> None:
    empty = m.GetParameterValuesResponse(
        [pv("Device.Users.User.1.Password", ""), pv("Device.WiFi.SSID.1.SSID", "net")]
    )
    body = envelope_bytes(empty)
    assert mask_body(body, parse_envelope(body).body) == body.decode()
    # the same answer with the password read back: masked, parsed message or not
    full = m.GetParameterValuesResponse(
        [pv("Device.Users.User.1.Password", "hunter2"), pv("Device.WiFi.SSID.1.SSID", "net")]
    )
    body = envelope_bytes(full)
    for given in (parse_envelope(body).body, None):
        text = mask_body(body, given)
        assert "hunter2" not in text and MASK in text and ">net<" in text


def test_a_secret_the_parsed_message_does_not_list_is_still_masked() -> None:
    # the codec's message says nothing to mask, but the body holds one struct
    # more than it lists: the structural masking runs and finds it
    body = envelope_bytes(
        m.GetParameterValuesResponse(
            [
                pv("Device.Users.User.1.Password", "hunter2"),
                pv("Device.Users.User.2.Password", ""),
            ]
        )
    )
    listed = m.GetParameterValuesResponse([pv("Device.Users.User.2.Password", "")])
    text = mask_body(body, listed)
    assert "hunter2" not in text and MASK in text
    # a Password element (Download) never takes the short way either
    download = envelope_bytes(
        m.Download(
            command_key="k",
            file_type="1 Firmware Upgrade Image",
            url="http://files/x.bin",
            username="u",
            password="dl-secret",
            file_size=1,
            target_file_name="",
            delay_seconds=0,
            success_url="",
            failure_url="",
        )
    )
    assert "dl-secret" not in mask_body(download, listed)


def test_long_bodies_are_held_compressed_and_come_back_whole() -> None:
    answer = m.GetParameterValuesResponse(
        [pv(f"Device.Hosts.Host.{i}.HostName", f"host-{i}") for i in range(400)]
    )
    body = envelope_bytes(answer)
    t = Transcript(max_bytes=1024 * 1024)
    t.add("in", body, rpc="GetParameterValuesResponse", message=parse_envelope(body).body)
    t.add("in", b"", rpc=None)
    assert isinstance(t.entries[0]["body"], bytes) and len(t.entries[0]["body"]) < len(body) / 4
    (long, empty) = t.messages
    assert long["body"] == body.decode() and long["size"] == len(body)
    assert empty["body"] == "" and t.stored_bytes == len(body)
