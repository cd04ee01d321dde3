"""Settings for running in production: TLS, client certificates, trusted proxies, metrics.

Each refused combination is one that would otherwise be silently ignored or
would let CPEs in with no credential at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from acs.config import Settings
from acs.metrics import event_label, fault_label
from acs.web.proxy import parse_networks

CERT = Path("/etc/acs/cert.pem")
CA = Path("/etc/acs/cpe-ca.pem")


def settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"tls_key_file": "/k.pem"}, "ACS_TLS_KEY_FILE is set without ACS_TLS_CERT_FILE"),
        ({"tls_client_ca_file": CA}, "ACS_CWMP_CLIENT_CERT is none"),
        ({"cwmp_client_cert": "required", "tls_client_ca_file": CA}, "needs TLS on the CWMP"),
        (
            {
                "cwmp_client_cert": "required",
                "tls_client_ca_file": CA,
                "tls_cert_file": CERT,
                "tls_listeners": "api,files",
            },
            "needs TLS on the CWMP",
        ),
        ({"cwmp_client_cert": "optional", "tls_cert_file": CERT}, "needs ACS_TLS_CLIENT_CA_FILE"),
        (
            {
                "cwmp_client_cert": "optional",
                "tls_cert_file": CERT,
                "tls_client_ca_file": CA,
                "cpe_auth": "none",
            },
            "no credential at all",
        ),
        ({"tls_listeners": "cwmp,web"}, "unknown listener"),
        ({"trusted_proxies": "10.0.0.1, proxy.example"}, "'proxy.example'"),
        ({"metrics_db_cache_s": 0}, "greater than 0"),
    ],
)
def test_refused_combinations_say_what_to_change(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        settings(**kw)


def test_accepted_combinations() -> None:
    # the client certificate as the CPE's only credential is a choice an operator may make
    s = settings(
        tls_cert_file=CERT, tls_client_ca_file=CA, cwmp_client_cert="required", cpe_auth="none"
    )
    assert s.tls_on("cwmp") and s.tls_on("api") and s.tls_on("files")
    assert s.files_base_url.startswith("https://")
    # old CPE download clients: files stay on plain HTTP
    s = settings(tls_cert_file=CERT, tls_listeners="cwmp, api")
    assert s.tls_on("cwmp") and not s.tls_on("files")
    assert s.files_base_url == "http://127.0.0.1:7567/"
    # no certificate: nothing speaks TLS, whatever the listener list says
    assert not settings().tls_on("cwmp")
    assert settings(tls_listeners=" api ,cwmp ").tls_listeners == "cwmp,api"


def test_trusted_proxies_parse_addresses_and_networks() -> None:
    nets = parse_networks(" 10.0.0.1, 192.168.0.0/16 ,, ::1, 2001:db8::/32 ")
    assert [str(n) for n in nets] == ["10.0.0.1/32", "192.168.0.0/16", "::1/128", "2001:db8::/32"]
    assert parse_networks("") == ()
    # a host address with its mask written loosely is still that network
    assert str(parse_networks("10.1.2.3/8")[0]) == "10.0.0.0/8"


def test_label_values_from_cpes_are_bounded() -> None:
    assert event_label("0 BOOTSTRAP") == "0 BOOTSTRAP"
    assert event_label("M Download") == "M Download"
    assert event_label("X 00256D RESET") == "X vendor"
    assert event_label("anything a CPE makes up") == "other"
    assert fault_label(9005) == "9005"
    assert fault_label(9850) == "9850"  # the vendor range is bounded: kept
    assert fault_label(123456) == "other"
