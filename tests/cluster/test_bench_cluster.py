"""bench.cluster stays runnable: its quick run (one ACS host, then two, behind
HAProxy on the rig) says what it measured, and both windows saw sessions."""

from __future__ import annotations

import json
import re

import pytest

from bench import cluster as cluster_bench
from tests.cluster import rig

pytestmark = pytest.mark.cluster


def test_the_two_host_row_measures_one_host_then_two(capsys: pytest.CaptureFixture[str]) -> None:
    reason = rig.why_not()
    if reason is not None:
        pytest.skip(reason)
    cluster_bench.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    (row,) = json.loads(lines[-1])["rows"]
    one, two = (float(x.replace(",", "")) for x in re.findall(r"([\d,.]+)/s", row["measured"]))
    assert one > 0 and two > 0, row
    assert row["value"] == round(two, 1)
    assert row["met"] is (float(row["ratio"]) > 1.0)
    # the CPU split names every process of the rig
    for role in ("ACS hosts", "HAProxy", "PostgreSQL + Patroni", "simulator"):
        assert role in row["notes"], row["notes"]
