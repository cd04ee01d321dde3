"""bench.http_layer stays runnable: each of the four bare servers answers the load
generator's POSTs and its CPU per POST is measured."""

from __future__ import annotations

import json

import pytest

from bench import http_layer


def test_quick_run_measures_every_server(capsys: pytest.CaptureFixture[str]) -> None:
    http_layer.main(["--quick", "--seconds", "1", "--port", "20199"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["scenario"] == http_layer.SCENARIO
    names = [row["target"] for row in result["rows"]]
    assert names == [
        f"HTTP layer alone: {server}+{loop}, server CPU per POST"
        for server, loop in http_layer.COMBOS
    ]
    raw = json.loads(lines[-2])["raw"]
    for runs in raw.values():
        ((rate, cpu_us),) = runs
        assert rate > 0 and cpu_us > 0  # answered (no error) and its CPU counted
