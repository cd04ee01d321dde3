"""The pieces of `acs serve --workers N` that need no process: session ids that
name their worker, and /metrics merged over workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from acs.metrics import Metrics, merge_worker_metrics
from acs.web.relay import Workers

W = Workers(index=1, count=3, run_dir=Path("/nonexistent"), secret=b"s" * 32)


@pytest.mark.parametrize(
    ("session_id", "owner"),
    [
        (W.session_id("abc-_x"), 1),
        ("0.tok", 0),
        ("2.tok", 2),
        ("3.tok", None),  # no such worker: a cookie from a bigger run, or made up
        ("tok", None),  # a single process's id
        ("-1.tok", None),
        ("x.tok", None),
        ("", None),
    ],
)
def test_a_session_id_names_its_owner_or_nobody(session_id: str, owner: int | None) -> None:
    assert W.owner_of(session_id) == owner


def test_the_relay_token_is_shared_but_is_not_the_secret() -> None:
    sibling = Workers(index=0, count=3, run_dir=W.run_dir, secret=W.secret)
    assert sibling.relay_token == W.relay_token
    assert W.secret.hex() not in W.relay_token
    other_run = Workers(index=1, count=3, run_dir=W.run_dir, secret=b"t" * 32)
    assert other_run.relay_token != W.relay_token


def test_metrics_of_workers_merge_into_one_valid_exposition() -> None:
    a, b = Metrics(), Metrics()
    a.session("completed", 0.2)
    b.session("completed", 0.4)
    b.session("completed", 0.4)
    b.relay("cookie")
    texts = {0: asyncio.run(a.render()), 1: asyncio.run(b.render())}
    # a database gauge, as every worker reads it from the same PostgreSQL
    texts = {
        i: t + b'# HELP acs_jobs Jobs\n# TYPE acs_jobs gauge\nacs_jobs{state="pending"} 7.0\n'
        for i, t in texts.items()
    }
    merged = merge_worker_metrics(texts, answering=1).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}  # parses: valid
    assert merged.count("# TYPE acs_cwmp_sessions_total counter") == 1
    done = {
        s.labels["worker"]: s.value
        for s in families["acs_cwmp_sessions"].samples
        if s.labels["outcome"] == "completed"
    }
    assert done == {"0": 1.0, "1": 2.0}
    relayed = {s.labels["worker"]: s.value for s in families["acs_cwmp_relayed"].samples
               if s.labels["reason"] == "cookie"}  # fmt: skip
    assert relayed == {"0": 0.0, "1": 1.0}
    # the same database seen by both: once, with no worker label to sum over
    assert [(s.labels, s.value) for s in families["acs_jobs"].samples] == [
        ({"state": "pending"}, 7.0)
    ]
