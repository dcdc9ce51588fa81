"""Server-rendered inline SVG charts for the review pages: no JavaScript, no external resources.

Colours come from CSS classes (`s0`..`s9`, `other`) in `static/review.css`, so the pages run
under a Content-Security-Policy without inline styles. Every label is escaped; every bar
carries a `<title>` (the browser shows it on hover) and links to the list it counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Bar", "PALETTE_SIZE", "bar_chart", "nice_ticks", "stacked_chart"]

PALETTE_SIZE = 10


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) up to at least `maximum`."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(int(round(top / step)) + 1)]


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def series_class(index: int | None) -> str:
    return "other" if index is None or index >= PALETTE_SIZE else f"s{index}"


def stacked_chart(
    buckets: Sequence[float],
    values: dict[float, Counter[str]],
    keys: Sequence[str],
    label: Callable[[float], str],
    title: Callable[[float], str],
    href: Callable[[float, str | None], str],
    label_every: int = 1,
    width: int = 960,
    height: int = 240,
) -> Markup:
    """One stacked bar per bucket; `keys` get their own colour (in order), the rest is `other`."""
    left, right, top, bottom = 48, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values.get(b, Counter()).values()) for b in buckets]
    ticks = nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.72, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
    ]
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(tick)}</text>')
    index = {key: i for i, key in enumerate(keys)}
    for i, bucket in enumerate(buckets):
        x = left + i * slot + (slot - bar_w) / 2
        counts = values.get(bucket, Counter())
        y = top + plot_h
        stack: list[tuple[str | None, int]] = [(k, counts[k]) for k in keys if counts.get(k)]
        other = sum(n for k, n in counts.items() if k not in index)
        if other:
            stack.append((None, other))
        for key, n in stack:
            h = n * scale
            y -= h
            name = key if key is not None else "other rules"
            tip = escape(f"{title(bucket)}: {name}: {n:,}")
            parts.append(
                f'<a href="{escape(href(bucket, key))}"><rect class="{series_class(index.get(key) if key else None)}"'
                f' x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}">'
                f"<title>{tip}</title></rect></a>"
            )
        if totals[i] == 0:
            parts.append(
                f'<rect class="empty" x="{x:.1f}" y="{top + plot_h - 1:.1f}" width="{bar_w:.1f}" height="1">'
                f"<title>{escape(title(bucket))}: none</title></rect>"
            )
        if i % label_every == 0 or i == len(buckets) - 1:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                f"{escape(label(bucket))}</text>"
            )
    parts.append(f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    href: str
    css: str = "s0"
    note: str = ""  # e.g. "12% of 4,210"
    title: str = ""  # the hover text, when the label is short for something longer


def bar_chart(bars: Sequence[Bar], width: int = 420, row: int = 26, label_w: int = 172) -> Markup:
    """Horizontal bars, largest first as given, each label and bar a link."""
    if not bars:
        return Markup('<p class="muted">No rejections in this range.</p>')
    height = row * len(bars) + 4
    value_w = 130 if any(b.note for b in bars) else 50
    plot_w = width - label_w - value_w
    peak = max(b.count for b in bars) or 1
    parts = [f'<svg class="bars" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, bar in enumerate(bars):
        y = i * row + 2
        w = max(bar.count / peak * plot_w, 1.0)
        label = bar.label if len(bar.label) <= 21 else bar.label[:20] + "\u2026"
        value = f"{bar.count:,}" + (f" ({bar.note})" if bar.note else "")
        parts.append(
            f'<a href="{escape(bar.href)}"><title>{escape(bar.title or bar.label)}: {bar.count:,}</title>'
            f'<text class="label" x="{label_w - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="{escape(bar.css)}" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}"/>'
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + row / 2 + 4:.1f}">{escape(value)}</text></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
