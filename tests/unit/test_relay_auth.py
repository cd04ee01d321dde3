"""Host relay signatures: every signed field matters, and only the cluster's key signs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from acs.config import Settings
from acs.core import relay_auth as ra

KEY = ra.key_of("s" * 40)
FIELDS = ("POST", "/acs", b"<Inform/>", 1_700_000_000, "nonce-1", ("10.0.0.7", "https", "cpe"))


def test_a_signature_verifies_and_any_changed_field_breaks_it() -> None:
    good = ra.sign_request(KEY, *FIELDS)
    assert ra.verify(ra.sign_request(KEY, *FIELDS), good)
    changes = [
        ("GET", *FIELDS[1:]),
        (FIELDS[0], "/other", *FIELDS[2:]),
        (*FIELDS[:2], b"<Inform />", *FIELDS[3:]),
        (*FIELDS[:3], FIELDS[3] + 1, *FIELDS[4:]),
        (*FIELDS[:4], "nonce-2", FIELDS[5]),
        (*FIELDS[:5], ("10.0.0.8", "https", "cpe")),
        (*FIELDS[:5], ("10.0.0.7", "http", "cpe")),
        (*FIELDS[:5], ("10.0.0.7", "https", "admin")),
    ]
    for changed in changes:
        assert not ra.verify(ra.sign_request(KEY, *changed), good), changed
    assert not ra.verify(ra.sign_request(ra.key_of("t" * 40), *FIELDS), good)


def test_answers_are_bound_to_their_request_status_and_body() -> None:
    good = ra.sign_answer(KEY, "nonce-1", 200, b"body")
    assert ra.verify(ra.sign_answer(KEY, "nonce-1", 200, b"body"), good)
    assert not ra.verify(ra.sign_answer(KEY, "nonce-2", 200, b"body"), good)
    assert not ra.verify(ra.sign_answer(KEY, "nonce-1", 204, b"body"), good)
    assert not ra.verify(ra.sign_answer(KEY, "nonce-1", 200, b"bodx"), good)
    # a request's signature is no answer's, even over the same text
    assert ra.sign_request(KEY, *FIELDS) != ra.sign_answer(KEY, "nonce-1", 200, b"")


def test_freshness_window_and_header_junk() -> None:
    assert ra.fresh(1000, 1000 + ra.WINDOW_S) and not ra.fresh(1000, 1001 + ra.WINDOW_S)
    assert not ra.fresh(1000 + ra.WINDOW_S + 1, 1000)  # from the future too
    assert not ra.verify(ra.sign_answer(KEY, "n", 200, b""), "\udcff")


def test_a_relay_listener_needs_the_secret_and_a_port() -> None:
    with pytest.raises(ValidationError, match="ACS_CLUSTER_SECRET"):
        Settings(relay_listen="127.0.0.1:7577")
    with pytest.raises(ValidationError, match="host:port"):
        Settings(relay_listen="127.0.0.1", cluster_secret="s" * 40)
    with pytest.raises(ValidationError):
        Settings(cluster_secret="too-short")
    assert Settings(relay_listen="0.0.0.0:7577", cluster_secret="s" * 40).relay_listen
