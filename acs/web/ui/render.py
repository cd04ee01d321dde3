"""Turning data into HTML: the Jinja2 environment, its filters, and small SVG charts.

Autoescaping is on for every template, so a value a CPE reported (an SSID, a
fault string) is always text, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def ago(value: Any, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h': short enough for a table cell."""
    when = parse_time(value)
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if future else f"{text} ago"


def when(value: Any) -> str:
    """An exact UTC time, for tooltips and exports."""
    t = parse_time(value)
    return "" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: Any) -> str:
    n = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)  # unreachable; keeps type checkers content


def seg(value: Any) -> str:
    """A URL path segment: device ids carry '%' and must be escaped whole."""
    return quote(str(value), safe="")


def query(base: dict[str, Any], **changes: Any) -> str:
    """The query string of the current page with some parameters changed."""
    merged = {k: v for k, v in {**base, **changes}.items() if v not in (None, "", [])}
    return "?" + urlencode(merged, doseq=True) if merged else "?"


# --------------------------------------------------------------------------- charts

# the campaign device states in the order a device goes through them, each
# with the CSS class that colours it (ui.css)
STATE_ORDER = (
    "succeeded",
    "rolled_back",
    "verifying",
    "installing",
    "downloading",
    "pending",
    "failed",
    "skipped",
)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    values: tuple[int, ...]  # overlaid, largest first: e.g. total, last day, last hour
    href: str | None = None


def bar_chart(
    bars: Sequence[Bar], series: Sequence[str], *, title: str, width: int = 640
) -> Markup:
    """Horizontal bars, one row per label, with the series overlaid (each one
    a subset of the one before, as devices seen in a day are of all devices)."""
    row, label_w, pad = 24, 220, 110
    plot_w = width - label_w - pad
    top = max((max(b.values, default=0) for b in bars), default=0) or 1
    height = row * len(bars) + 8
    # an image may hold no links: with linked labels the chart is a group of them
    role = "group" if any(b.href for b in bars) else "img"
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="{role}"'
        f' aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, b in enumerate(bars):
        y = i * row + 4
        label = escape(b.label if len(b.label) <= 32 else b.label[:31] + "…")
        text = f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="lbl">{label}</text>'
        if b.href:
            text = f'<a href="{escape(b.href)}">{text}</a>'
        out.append(text)
        for s, v in enumerate(b.values):
            w = max(v / top * plot_w, 1 if v else 0)
            out.append(
                f'<rect x="{label_w}" y="{y + 2 + s * 2}" width="{w:.1f}" height="{16 - s * 4}"'
                f' class="s{s}"><title>{escape(series[s])}: {v}</title></rect>'
            )
        summary = " / ".join(str(v) for v in b.values)
        out.append(
            f'<text x="{label_w + plot_w + 6}" y="{y + 15}" class="num">{escape(summary)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def time_chart(
    points: Sequence[tuple[str, int]], *, title: str, label_every: int, width: int = 640
) -> Markup:
    """A column per time step (``points``: [ISO time, value]), its top value on
    the axis and each column's time and value in its tooltip; the total in the
    accessible name, so the chart says what it shows without the picture."""
    height, left, bottom = 120, 40, 18
    plot_w, plot_h = width - left - 4, height - bottom - 6
    top = max((v for _, v in points), default=0)
    scale = top or 1
    col = plot_w / max(1, len(points))
    total = sum(v for _, v in points)
    out = [
        f'<svg class="chart timeline-chart" viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-label="{escape(title)}: {total} in all, at most {top} per step">'
        f"<title>{escape(title)}</title>",
        f'<text x="{left - 4}" y="12" text-anchor="end" class="num">{top}</text>',
        f'<text x="{left - 4}" y="{plot_h + 6}" text-anchor="end" class="num">0</text>',
        f'<line x1="{left}" y1="{plot_h + 6}" x2="{width - 4}" y2="{plot_h + 6}" class="axis"/>',
    ]
    for i, (at, v) in enumerate(points):
        x = left + i * col
        h = v / scale * plot_h
        if v:
            out.append(
                f'<rect x="{x:.1f}" y="{plot_h + 6 - h:.1f}" width="{max(col - 1, 1):.1f}"'
                f' height="{max(h, 1):.1f}" class="s0"><title>{escape(at)}: {v}</title></rect>'
            )
        if i % label_every == 0:
            out.append(f'<text x="{x:.1f}" y="{height - 4}" class="lbl">{escape(_tick(at))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _tick(at: str) -> str:
    """An axis label: the hour for points of a day, the date for longer spans."""
    t = parse_time(at)
    if t is None:
        return at
    return t.strftime("%H:%M") if t.hour or t.minute else t.strftime("%d %b")


def stacked_bar(counts: dict[str, int], total: int | None = None, width: int = 360) -> Markup:
    """One bar split by campaign device state; ``total`` leaves room for devices
    not counted yet (a stage's share not admitted)."""
    whole = max(total or 0, sum(counts.values())) or 1
    x = 0.0
    parts = []
    order = [s for s in STATE_ORDER if s in counts] + sorted(set(counts) - set(STATE_ORDER))
    for state in order:
        n = counts[state]
        if n <= 0:
            continue
        w = n / whole * width
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" class="st-{escape(state)}">'
            f"<title>{escape(state)}: {n}</title></rect>"
        )
        x += w
    label = ", ".join(f"{s} {counts[s]}" for s in order if counts[s]) or "no devices yet"
    return Markup(
        f'<svg class="stack" viewBox="0 0 {width} 14" width="{width}" height="14" role="img"'
        f' aria-label="{escape(label)}"><rect x="0" y="0" width="{width}" height="14"'
        f' class="st-empty"/>{"".join(parts)}</svg>'
    )


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("acs.web.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        # a misspelt variable must fail the tests, not render as nothing
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, when=when, size=size, seg=seg)
    env.globals.update(
        query=query, stacked_bar=stacked_bar, time_chart=time_chart, STATE_ORDER=STATE_ORDER
    )
    return env
