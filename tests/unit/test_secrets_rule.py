"""The one secrets rule (acs.core.secrets) and sealing (acs.core.sealing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from acs.config import Settings
from acs.core import secrets
from acs.core.sealing import Sealer, SealError
from acs.core.secrets import MASK, is_secret_name, is_secret_parameter, mask_document


@pytest.fixture(autouse=True)
def _builtin_rule() -> Iterator[None]:
    yield
    secrets.use_extra_endings(())


def test_names_that_hold_passwords_and_keys_are_secrets() -> None:
    for name in (
        "Device.ManagementServer.ConnectionRequestPassword",
        "InternetGatewayDevice.ManagementServer.Password",
        "Device.ManagementServer.STUNPassword",
        "Device.WiFi.AccessPoint.1.Security.KeyPassphrase",
        "Device.WiFi.AccessPoint.1.Security.PreSharedKey",
        "Device.WiFi.AccessPoint.1.Security.WEPKey",
        "Device.WiFi.AccessPoint.1.Security.RadiusSecret",
        "Device.X_ACME_ADMINPASSWORD",
        "password",
    ):
        assert is_secret_name(name), name
    for name in ("Device.WiFi.SSID.1.SSID", "Device.Users.User.1.Username", "PasswordHint.X"):
        assert not is_secret_name(name), name
    assert not is_secret_parameter("InternetGatewayDevice.UserInterface.SharedPassword", "boolean")
    assert is_secret_parameter("Device.X.Password", "xsd:string")


def test_the_operator_adds_endings_and_a_bad_one_is_named() -> None:
    assert not is_secret_name("Device.X_ACME_Token")
    secrets.use_extra_endings(secrets.parse_endings(" X_ACME_Token, Community ,"))
    assert is_secret_name("Device.X_ACME_TOKEN") and is_secret_name("Device.SNMP.Community")
    with pytest.raises(ValidationError, match="'bad ending'"):
        Settings(secret_parameters="Token,bad ending")


def test_documents_are_masked_wherever_a_secret_sits() -> None:
    sealed = Sealer(b"0123456789abcdef0123456789abcdef").seal("x", "where")
    doc = {
        "parameterValues": [
            ["Device.A.Password", "p1", "xsd:string"],
            ["Device.A.Enable", True],
            ["Device.UserInterface.SharedPassword", "0", "xsd:boolean"],
        ],
        "password": "download-pw",
        "url": "http://user:url-pw@127.0.0.1/f.bin",
        "set": {"Device.B.WEPKey": {"policy": 1, "value": "wep"}},
        "conflicts": [{"path": "Device.C.PreSharedKey", "wanted": "w", "chosen": "c"}],
        "sealed": sealed,
        "fault": "bad configuration line 'Device.D.KeyPassphrase quoted-pw'",
        "empty": ["Device.E.Password", ""],
    }
    shown = mask_document(doc)
    text = repr(shown)
    for clear in ("p1", "download-pw", "url-pw", "wep", "'w'", "'c'", sealed, "quoted-pw"):
        assert clear not in text, clear
    assert shown["parameterValues"][1] == ["Device.A.Enable", True]
    assert shown["parameterValues"][2][1] == "0"  # a boolean switch stays readable
    assert shown["empty"] == ["Device.E.Password", ""]  # empty says "none reported"
    assert shown["url"] == f"http://{MASK}@127.0.0.1/f.bin"
    assert doc["password"] == "download-pw"  # a copy: the original is untouched
    assert secrets.mask_free_text("the current password is wrong") == (
        "the current password is wrong"
    )


def test_sealed_job_arguments_open_again_only_with_the_key() -> None:
    sealer = Sealer(b"a job key of thirty-two characters")
    args = {"parameterValues": [["Device.A.Password", "p1"], ["Device.A.SSID", "home"]]}
    sealed = sealer.seal_args(args)
    assert sealed["parameterValues"][1] == ["Device.A.SSID", "home"]
    assert sealed["parameterValues"][0][1].startswith(secrets.SEALED_PREFIX)
    assert sealer.seal_args(sealed) == sealed  # sealing twice changes nothing
    assert sealer.open_args(sealed) == args
    with pytest.raises(SealError):
        Sealer(b"another key of thirty-two characters").open_args(sealed)
    with pytest.raises(ValueError, match="16 bytes"):
        Sealer(b"short")


def test_log_lines_mask_a_quoted_secret(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from acs.logs import log

    with caplog.at_level(logging.INFO):
        log(
            logging.getLogger("acs.test"),
            logging.INFO,
            "task_fault",
            reason="9018 bad configuration line 'Device.A.KeyPassphrase logged-pw'",
            url="http://user:url-pw@127.0.0.1/f",
        )
    assert "logged-pw" not in caplog.text and "url-pw" not in caplog.text
    assert "Device.A.KeyPassphrase ********" in caplog.text
