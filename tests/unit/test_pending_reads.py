"""Held discovery answers (devices.PendingReads): applied in the order they
came, to the same tree the one-answer-at-a-time merges made."""

from __future__ import annotations

from datetime import UTC, datetime

from acs.cwmp import messages as m
from acs.store import devices

AT = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def infos(*names: str) -> list[m.ParameterInfoStruct]:
    return [m.ParameterInfoStruct(n, not n.endswith(".")) for n in names]


def test_held_answers_make_the_tree_the_answers_one_by_one_make() -> None:
    names = infos("Device.", "Device.A", "Device.B.", "Device.B.C")
    values = [
        m.ParameterValueStruct("Device.A", "1", "xsd:int"),
        m.ParameterValueStruct("Device.B.C", "x"),
    ]
    start = {"Device.Old": {"v": "gone"}, "Device.A": {"v": "0", "t": "int", "vt": 1}}
    one_by_one = {k: dict(v) for k, v in start.items()}
    devices.apply_parameter_names(one_by_one, "Device.", False, names, AT)
    devices.apply_parameter_values(one_by_one, values, AT, read=True)

    reads = devices.PendingReads()
    reads.add_names("Device.", False, names)
    reads.add_values(values)
    assert reads and reads.size > 0
    held = reads.take()
    assert not reads and reads.size == 0
    tree = {k: dict(v) for k, v in start.items()}
    assert devices.apply_pending_reads(tree, held, AT)
    assert tree == one_by_one
    assert "Device.Old" not in tree
    assert tree["Device.A"] == {"v": "1", "t": "int", "vt": int(AT.timestamp()), "w": True,
                                "nt": int(AT.timestamp())}  # fmt: skip


def test_answers_apply_in_the_order_they_came() -> None:
    # a value read, then names that no longer list it: the names win
    reads = devices.PendingReads()
    reads.add_values([m.ParameterValueStruct("Device.X", "1")])
    reads.add_names("Device.", False, infos("Device.Y"))
    tree: devices.Tree = {}
    devices.apply_pending_reads(tree, reads.take(), AT)
    assert set(tree) == {"Device.Y"}
    # and the other way round: the value read after the names stays
    reads.add_names("Device.", False, infos("Device.Y"))
    reads.add_values([m.ParameterValueStruct("Device.X", "1")])
    tree = {}
    devices.apply_pending_reads(tree, reads.take(), AT)
    assert set(tree) == {"Device.X", "Device.Y"}


def test_a_held_secret_is_masked_as_the_store_keeps_it() -> None:
    reads = devices.PendingReads()
    reads.add_values([m.ParameterValueStruct("Device.WiFi.AccessPoint.1.Security.KeyPassphrase",
                                             "acs:sealed:v1:abc")])  # fmt: skip
    tree: devices.Tree = {}
    devices.apply_pending_reads(tree, reads.take(), AT)
    (entry,) = tree.values()
    assert entry["v"] == devices.MASK and entry["x"] == "acs:sealed:v1:abc"
