"""Codec throughput: Inform bytes -> InformResponse bytes, against lxml's parse rate.

The pipeline is what the CWMP endpoint (acs/web/cwmp.py) does with an Inform,
minus the database and HTTP: ``parse_envelope`` into the typed message, a
fresh ``AcsSession`` fed the envelope, ``InformResponse`` sent through it, and
the reply serialized. The ceiling is ``lxml.etree.fromstring`` of the same
bytes with the codec's own hardened parser and nothing else.

The row is a guard against regressions, not a target (issue 19 retired the
earlier goal of 40 % of lxml): at about 50 us the codec is a few per cent of a
periodic session, whose time is in HTTP, the database calls and Python per
message (bench.fleet's periodic row and its profile). The guard fails when the
codec loses a sixth of the 23-24 % it had when the goal was retired.

The message is the one the simulator sends: a TR-181 gateway's periodic
Inform (cpe_simulator ``SimulatedCpe._inform``, event ``2 PERIODIC``, its
ParameterList), serialized as the simulator serializes it.

Timing: both loops run in this process, interleaved in short batches (so a
noisy neighbour slows both alike), after a warm-up. Noise on a shared machine
only ever adds time, so each rate is taken from the fastest batch; the median
batch is printed too.

    python -m bench.codec            # about 15 s
    python -m bench.codec --quick    # smoke run, well under a second
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lxml import etree

from acs.cwmp import messages as m
from acs.cwmp import soap
from acs.cwmp.session import AcsSession, InformReceived
from acs.cwmp.soap import CWMP_NS_1_0, Envelope, parse_envelope, serialize_envelope

GOAL = 0.20  # pipeline rate / lxml parse rate: a regression guard, not a target
SCENARIO = "codec-inform"


def simulator_inform(serial: str = "SIM00000001") -> bytes:
    """A periodic Inform exactly as the simulator sends it, as bytes."""
    from cpe_simulator.cpe import SimulatedCpe
    from cpe_simulator.datamodel import Identity, load_template
    from cpe_simulator.fleet import Fleet, FleetConfig
    from cpe_simulator.tree import ParameterTree

    acs_url = "http://127.0.0.1:7547/"
    fleet = Fleet(FleetConfig(acs_url=acs_url))
    tree = ParameterTree(
        load_template("tr181-gateway"),
        Identity.from_serial(serial),
        acs_url=acs_url,
        connection_request_url=f"http://127.0.0.1:7548/cr/{serial}",
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )
    cpe = SimulatedCpe(fleet, tree, frozenset())
    cpe.power_on()
    # a device long since bootstrapped, waking up on its periodic timer
    cpe.bootstrapped = True
    cpe.events.clear()
    cpe.add_event("2 PERIODIC")
    inform = cpe._inform()
    inform.current_time = datetime(2026, 5, 17, 8, 30, 12, tzinfo=UTC)
    envelope = Envelope(body=inform, cwmp_id=f"{serial}-1a2b3c4d", cwmp_ns=CWMP_NS_1_0)
    return serialize_envelope(envelope)


def inform_to_response(data: bytes) -> bytes:
    """What the CWMP endpoint does with an Inform, without database and HTTP."""
    envelope = parse_envelope(data)
    assert envelope is not None
    acs = AcsSession(id_prefix=secrets.token_hex(4))
    event = acs.receive(envelope)
    assert isinstance(event, InformReceived)
    reply = acs.send(m.InformResponse(max_envelopes=1))
    assert reply is not None
    return serialize_envelope(reply)


def lxml_parse(data: bytes) -> etree._Element:
    # the codec's own parser object: the very same hardened settings
    return etree.fromstring(data, soap._PARSER)


def _batch(fn: Callable[[bytes], object], data: bytes, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(data)
    return time.perf_counter() - start


def measure(data: bytes, batch: int, batches: int) -> dict[str, float]:
    for _ in range(max(1, batch // 4)):  # warm-up: caches, allocator, branch predictors
        lxml_parse(data)
        inform_to_response(data)
    ceiling: list[float] = []
    pipeline: list[float] = []
    for _ in range(batches):
        ceiling.append(batch / _batch(lxml_parse, data, batch))
        pipeline.append(batch / _batch(inform_to_response, data, batch))
    best_c, best_p = max(ceiling), max(pipeline)
    return {
        "ceiling_best": best_c,
        "pipeline_best": best_p,
        "ceiling_median": statistics.median(ceiling),
        "pipeline_median": statistics.median(pipeline),
        "ratio": best_p / best_c,
        "ratio_median": statistics.median(p / c for p, c in zip(pipeline, ceiling, strict=True)),
    }


def report(data: bytes, r: dict[str, float], batch: int, batches: int) -> dict[str, object]:
    print(f"Inform from the simulator: {len(data)} bytes; {batches} batches of {batch}")
    print("| loop | best msg/s | median msg/s | us/msg (best) |")
    print("|---|---|---|---|")
    for label, key in (
        ("lxml fromstring (ceiling)", "ceiling"),
        ("Inform -> InformResponse", "pipeline"),
    ):
        best = r[f"{key}_best"]
        print(f"| {label} | {best:,.0f} | {r[f'{key}_median']:,.0f} | {1e6 / best:.1f} |")
    met = r["ratio"] >= GOAL
    print(
        f"ratio {r['ratio']:.1%} (median of batches {r['ratio_median']:.1%}), "
        f"regression guard >= {GOAL:.0%}: {'held' if met else 'REGRESSED'}"
    )
    return {
        "scenario": SCENARIO,
        "rows": [
            {
                "target": "codec: Inform -> InformResponse vs raw lxml parse (regression guard)",
                "goal": f">= {GOAL:.0%} of lxml.etree.fromstring's rate (no regression)",
                "measured": (
                    f"{r['pipeline_best']:,.0f} msg/s vs {r['ceiling_best']:,.0f} parses/s"
                ),
                "value": round(r["pipeline_best"], 1),
                "met": met,
                "ratio": f"{r['ratio']:.3f}",
                "notes": (
                    f"{len(data)}-byte TR-181 periodic Inform from the simulator; best of "
                    f"{batches} interleaved batches of {batch}; median ratio "
                    f"{r['ratio_median']:.3f}"
                ),
            }
        ],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--batch", type=int, default=2000, help="messages per timed batch")
    ap.add_argument("--batches", type=int, default=40, help="timed batches of each loop")
    args = ap.parse_args(argv)
    batch, batches = (200, 3) if args.quick else (args.batch, args.batches)
    data = simulator_inform()
    result = report(data, measure(data, batch, batches), batch, batches)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
