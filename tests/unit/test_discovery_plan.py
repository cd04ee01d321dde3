"""Discovery in as few round trips as the CPE allows (acs.core.plans.discover),
driven against the simulator's parameter tree as the CPE: a partial-path read
where it is accepted, names then byte-sized batches where it is refused."""

from __future__ import annotations

from collections import Counter

import pytest

from acs.core import plans
from acs.cwmp import messages as m
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.faults import CpeFault
from cpe_simulator.tree import ParameterTree


def cpe_tree(model: str = "tr181-gateway") -> ParameterTree:
    return ParameterTree(
        load_template(model),
        Identity.from_serial("SIM00000077"),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url="http://127.0.0.1:30077/cr",
        clock=lambda: 1_790_000_000.0,
    )


def answer(
    tree: ParameterTree, request: m.Message, *, partial_gpv: bool, root_gpn: bool = True
) -> m.Message:
    """What a CPE with these quirks answers (faults as values, as on the wire)."""
    try:
        if isinstance(request, m.GetParameterValues):
            if not partial_gpv and any(n.endswith(".") for n in request.parameter_names):
                raise CpeFault(9005)
            return m.GetParameterValuesResponse(tree.get_parameter_values(request.parameter_names))
        assert isinstance(request, m.GetParameterNames)
        if not root_gpn and request.parameter_path == tree.root:
            raise CpeFault(9005)
        return m.GetParameterNamesResponse(
            tree.get_parameter_names(request.parameter_path, request.next_level)
        )
    except CpeFault as fault:
        return m.Fault(fault.code, fault.string)


def run(
    tree: ParameterTree, batch_bytes: int = 64 * 1024, **quirks: bool
) -> tuple[dict[str, object], Counter[str], dict[str, m.ParameterValueStruct], list[m.Message]]:
    values: dict[str, m.ParameterValueStruct] = {}
    plan = plans.discover(tree.root, 100, values=values, batch_bytes=batch_bytes)
    sent: Counter[str] = Counter()
    requests: list[m.Message] = []
    request = next(plan)
    while True:
        sent[request.rpc] += 1
        requests.append(request)
        try:
            request = plan.send(answer(tree, request, **quirks))
        except StopIteration as done:
            return done.value, sent, values, requests


@pytest.mark.parametrize("model", ["tr181-gateway", "tr098-gateway"])
def test_a_cpe_that_takes_partial_paths_is_discovered_in_two_round_trips(model: str) -> None:
    tree = cpe_tree(model)
    result, sent, values, requests = run(tree, partial_gpv=True)
    assert sent == {"GetParameterValues": 1, "GetParameterNames": 1}
    assert isinstance(requests[0], m.GetParameterNames)
    assert requests[1] == m.GetParameterValues(parameter_names=[tree.root])
    every = {p.name: p.value for p in tree.get_parameter_values([tree.root])}
    assert {k: v.value for k, v in values.items()} == every
    assert result["partialPath"] is True and result["rpcs"] == 2
    assert result["values"] == result["parameters"] == len(every) > 500


def test_a_cpe_that_refuses_partial_paths_gets_names_then_batches_sized_by_bytes() -> None:
    tree = cpe_tree()
    result, sent, values, requests = run(tree, partial_gpv=False)
    every = {p.name: p.value for p in tree.get_parameter_values([tree.root])}
    assert {k: v.value for k, v in values.items()} == every
    assert result["partialPath"] is False and result["skipped"] == []
    batches = [r for r in requests[2:] if isinstance(r, m.GetParameterValues)]
    assert sent["GetParameterValues"] == 1 + len(batches)
    # each batch's estimated answer fits the default 64 KB, and it took a quarter
    # of the batches of the fixed 100 names (the tree has over 1,000 parameters)
    for batch in batches:
        estimate = sum(
            len(n) + plans.PER_VALUE_MARKUP + plans.ASSUMED_VALUE_BYTES
            for n in batch.parameter_names
        )
        assert estimate <= 64 * 1024
    assert len(batches) <= len(every) / 100 / 3
    assert sum(len(b.parameter_names) for b in batches) == len(every)


def test_a_cpe_refusing_both_the_root_names_and_partial_paths_is_walked_and_read_whole() -> None:
    tree = cpe_tree()
    result, sent, values, _ = run(tree, partial_gpv=False, root_gpn=False)
    # the root's own parameters are out of reach when the root is refused (its
    # objects are asked by name), everything in the objects below it is read
    every = {p.name for p in tree.get_parameter_values([tree.root]) if p.name.count(".") > 1}
    assert set(values) == every
    assert result["parameters"] == len(every)
    assert sent["GetParameterNames"] > 2  # the root refused, its children asked one by one


def test_batches_by_bytes_keeps_order_cuts_at_the_budget_and_never_drops_a_name() -> None:
    names = [f"Device.X.{i}.{'Y' * (i % 50)}" for i in range(500)]
    batches = plans.batches_by_bytes(names, 4096)
    assert [n for b in batches for n in b] == names
    assert all(b for b in batches)
    cost = [
        sum(len(n) + plans.PER_VALUE_MARKUP + plans.ASSUMED_VALUE_BYTES for n in b) for b in batches
    ]
    assert all(c <= 4096 for c in cost)
    # a batch is only cut when the next name would not fit
    for batch, nxt in zip(batches, batches[1:], strict=False):
        extra = len(nxt[0]) + plans.PER_VALUE_MARKUP + plans.ASSUMED_VALUE_BYTES
        used = sum(len(n) + plans.PER_VALUE_MARKUP + plans.ASSUMED_VALUE_BYTES for n in batch)
        assert used + extra > 4096
    # one name bigger than the budget still goes, alone
    assert plans.batches_by_bytes(["D." + "x" * 9000, "D.y"], 1024) == [
        ["D." + "x" * 9000],
        ["D.y"],
    ]
