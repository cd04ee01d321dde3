"""py-spy profiles of a running ACS, summarised as their top frames.

`bench.fleet --profile DIR` records the ACS with py-spy during the counted
periodic phase (sampling, from outside, --nonblocking so the process is never
paused) and writes the collapsed stacks and a top-10 table next to them; the
table is what BENCHMARKS.md shows, so the next person sees where the time of a
session goes without re-running anything.

    python -m bench.profile stacks.txt    # the table of an existing recording
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench import common

# "handle (acs/web/cwmp.py:152)" -> ("handle", "acs/web/cwmp.py")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _short(path: str) -> str:
    """A frame's file as a reader knows it: within site-packages, or the checkout."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/lib/python3" in path:  # the standard library: "asyncio/events.py"
        return path.split("/lib/python3", 1)[1].partition("/")[2]
    for room in ("acs/", "cpe_simulator/", "bench/"):
        if f"/{room}" in path:
            return room + path.split(f"/{room}", 1)[1]
    return path.rsplit("/", 1)[-1]


def frame_name(raw: str) -> str:
    found = _FRAME.match(raw.strip())
    if found is None:
        return raw.strip()
    return f"{found['func']} ({_short(found['file'])})"


def summarise(stacks: str, top: int = 10) -> tuple[int, list[tuple[str, float, float]]]:
    """Samples in all, and the ``top`` frames by own time: (frame, self %, total %)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in stacks.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [frame_name(f) for f in stack.split(";")]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]  # py-spy's first "frame" names the process
        if not frames:
            continue
        own[frames[-1]] += n
        for name in set(frames):  # a recursive frame counts once per sample
            total[name] += n
    rows = [
        (name, 100.0 * n / samples, 100.0 * total[name] / samples)
        for name, n in own.most_common(top)
    ]
    return samples, rows


def table(samples: int, rows: list[tuple[str, float, float]]) -> str:
    out = [
        f"{samples:,} samples",
        "",
        "| frame (own time) | self | total |",
        "|---|---|---|",
    ]
    out += [f"| `{name}` | {own:.1f} % | {tot:.1f} % |" for name, own, tot in rows]
    return "\n".join(out)


def py_spy() -> str | None:
    found = common.BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy recording ``pid`` for ``seconds`` into ``out`` (collapsed stacks);
    None when py-spy is missing (the figures do not need it)."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--function",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes] | None, out: Path) -> str | None:
    """Wait for the recording; its top-10 table (also written beside it), or None."""
    if proc is None:
        return None
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not out.exists():
        print(f"   py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
        return None
    summary = table(*summarise(out.read_text()))
    out.with_suffix(".md").write_text(summary + "\n")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stacks", type=Path, help="py-spy record --format raw output")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    print(table(*summarise(args.stacks.read_text(), args.top)))


if __name__ == "__main__":
    main()
