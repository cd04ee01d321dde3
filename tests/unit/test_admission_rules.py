"""Fair admission's counting (acs/core/admission.py), without I/O."""

from __future__ import annotations

from acs.core.admission import Admission


def test_address_limit_counts_sessions_until_they_leave() -> None:
    adm = Admission(per_address=2, per_credential=10)
    first, second = adm.enter("192.0.2.1"), adm.enter("192.0.2.1")
    assert adm.refusal("192.0.2.1", None) == "address"
    assert adm.refusal("192.0.2.2", None) is None  # a neighbour is not counted
    adm.leave(first)
    adm.leave(first)  # twice (a session dropped on two paths) gives back one slot only
    assert adm.sessions_at("192.0.2.1") == 1
    assert adm.refusal("192.0.2.1", None) is None
    adm.leave(second)
    assert adm.sessions_at("192.0.2.1") == 0


def test_credential_slots_are_taken_only_once_verified() -> None:
    adm = Admission(per_address=10, per_credential=1)
    a = adm.enter("192.0.2.1")
    assert adm.refusal("192.0.2.9", "cpe") is None  # claimed, not yet verified
    assert adm.authenticate(a, "cpe")
    assert adm.refusal("192.0.2.9", "cpe") == "credential"
    b = adm.enter("192.0.2.2")
    # two Informs that passed the first check together: only one gets the slot
    assert not adm.authenticate(b, "cpe")
    adm.leave(b)
    assert adm.sessions_of("cpe") == 1 and adm.sessions_at("192.0.2.2") == 0
    assert adm.authenticate(a, None)  # no credential (auth off): nothing to count
    adm.leave(a)
    assert adm.sessions_of("cpe") == 0 and adm.refusal("192.0.2.9", "cpe") is None


def test_no_address_is_not_limited() -> None:
    adm = Admission(per_address=1, per_credential=1)
    adm.enter(None)
    assert adm.refusal(None, None) is None
