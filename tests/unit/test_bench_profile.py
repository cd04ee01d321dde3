"""bench.profile: py-spy's collapsed stacks summed into the top frames of BENCHMARKS.md."""

from __future__ import annotations

from bench import profile

STACKS = "\n".join(
    [
        'process 7:"acs serve";<module> (acs:1);run (/w/acs/loops.py:38);'
        "handle (/w/acs/web/cwmp.py:152);parse_envelope (/w/acs/cwmp/soap.py:300) 30",
        'process 7:"acs serve";<module> (acs:1);run (/w/acs/loops.py:38);'
        "handle (/w/acs/web/cwmp.py:152);"
        "write (/usr/lib/python3.11/asyncio/selector_events.py:1) 50",
        'process 7:"acs serve";<module> (acs:1);run (/w/acs/loops.py:38);'
        "_do_execute (/v/lib/python3.11/site-packages/asyncpg/connection.py:9) 20",
        "a line that is not a stack",
    ]
)


def test_self_and_total_shares() -> None:
    samples, rows = profile.summarise(STACKS, top=3)
    assert samples == 100
    assert rows == [
        ("write (asyncio/selector_events.py)", 50.0, 50.0),
        ("parse_envelope (acs/cwmp/soap.py)", 30.0, 30.0),
        ("_do_execute (asyncpg/connection.py)", 20.0, 20.0),
    ]
    # a frame's total counts every sample it is on, its own or its callees'
    _, everything = profile.summarise(STACKS, top=10)
    assert len(everything) == 3  # only leaves have own time
    text = profile.table(samples, rows)
    assert "| `write (asyncio/selector_events.py)` | 50.0 % | 50.0 % |" in text
    assert text.startswith("100 samples")


def test_totals_include_callees() -> None:
    stacks = "main (/w/acs/cli.py:1);leaf (/w/acs/a.py:2) 3\nmain (/w/acs/cli.py:1) 1"
    samples, rows = profile.summarise(stacks)
    assert samples == 4
    assert dict((name, (own, tot)) for name, own, tot in rows) == {
        "leaf (acs/a.py)": (75.0, 75.0),
        "main (acs/cli.py)": (25.0, 100.0),
    }
