"""libpq keyword/value connection strings become the URI asyncpg reads, host for host."""

from __future__ import annotations

import pytest
from asyncpg.connect_utils import _parse_connect_dsn_and_args

from acs.store.dsn import DsnError, has_failover, parse_keywords, redacted, to_uri


def parsed(uri: str):  # type: ignore[no-untyped-def]
    """What asyncpg itself makes of the URI: the proof that it reads what we meant."""
    addrs, params = _parse_connect_dsn_and_args(
        dsn=uri,
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        direct_tls=None,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
        service=None,
        servicefile=None,
    )
    return addrs, params


def test_a_patroni_style_multi_host_string_keeps_every_host_and_the_primary_rule() -> None:
    dsn = (
        "host=db1,db2 port=5432,5433 dbname=acs user=acs password='p w\\'x'"
        " target_session_attrs=read-write"
    )
    uri = to_uri(dsn)
    assert uri == (
        "postgresql://acs:p%20w%27x@db1:5432,db2:5433/acs?target_session_attrs=read-write"
    )
    addrs, params = parsed(uri)
    assert addrs == [("db1", 5432), ("db2", 5433)]
    assert params.user == "acs" and params.password == "p w'x" and params.database == "acs"
    assert str(params.target_session_attrs.value) == "read-write"
    assert has_failover(dsn)


def test_one_port_for_all_hosts_and_spaces_around_equals() -> None:
    assert to_uri("host = a,b port= 6432 dbname =x") == "postgresql://a:6432,b:6432/x"


def test_uris_pass_through_and_a_single_host_is_no_failover() -> None:
    uri = "postgresql://acs@127.0.0.1:5432/acs"
    assert to_uri(uri) == uri and not has_failover(uri)
    assert has_failover("postgresql://acs@a,b/acs")


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("host", "missing '='"),
        ("host=a password='open", "unterminated"),
        ("host=a,b,c port=1,2", "3 hosts but 2 ports"),
        ("   ", "empty"),
    ],
)
def test_malformed_strings_say_what_is_wrong(bad: str, why: str) -> None:
    with pytest.raises(DsnError, match=why):
        to_uri(bad)


def test_backslash_escapes_outside_quotes() -> None:
    assert parse_keywords(r"password=a\ b user=u") == {"password": "a b", "user": "u"}


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://acs:s3cret-pw@db1:5432,db2:5432/acs?target_session_attrs=read-write",
        "host=db1,db2 dbname=acs user=acs password=s3cret-pw target_session_attrs=read-write",
        "postgresql://acs@db1/acs?password=s3cret-pw&sslmode=require",
    ],
)
def test_a_banner_never_shows_the_password(dsn: str) -> None:
    shown = redacted(dsn)
    assert "s3cret-pw" not in shown and "***" in shown
    assert "db1" in shown and "acs" in shown  # still says where it connects


def test_a_dsn_without_a_password_is_shown_as_it_is() -> None:
    assert redacted("postgresql://postgres@127.0.0.1:5432/test") == (
        "postgresql://postgres@127.0.0.1:5432/test"
    )
