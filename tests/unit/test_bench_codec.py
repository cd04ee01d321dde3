"""bench.codec stays runnable: its message is a real Inform, its pipeline
answers it correctly, and its last line is the runner's JSON."""

from __future__ import annotations

import json

import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import parse_envelope
from bench import codec


def test_pipeline_answers_the_simulators_inform() -> None:
    data = codec.simulator_inform("SIM00000042")
    inform = parse_envelope(data)
    assert inform is not None and isinstance(inform.body, m.Inform)
    assert [e.event_code for e in inform.body.events] == ["2 PERIODIC"]
    assert inform.body.device_id.serial_number == "SIM00000042"
    names = [p.name for p in inform.body.parameter_list]
    assert "Device.ManagementServer.ConnectionRequestURL" in names

    reply = parse_envelope(codec.inform_to_response(data))
    assert reply is not None and reply.body == m.InformResponse(max_envelopes=1)
    assert reply.cwmp_id == inform.cwmp_id  # the answer echoes the Inform's cwmp:ID


def test_quick_run_prints_the_runner_row(capsys: pytest.CaptureFixture[str]) -> None:
    codec.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["scenario"] == "codec-inform"
    (row,) = result["rows"]
    assert row["value"] > 0
    ratio = float(row["ratio"])
    assert 0 < ratio < 1  # the pipeline parses too, so it cannot beat a bare parse
    assert row["met"] is (ratio >= codec.GOAL)
    assert any("Inform -> InformResponse" in line for line in lines[:-1])  # the table
