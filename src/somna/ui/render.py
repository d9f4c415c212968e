"""Text made safe for the page: Markdown without raw HTML, diffs as lines, and the charts as SVG.

A memory may hold text harvested from transcripts, some of it hostile. Its Markdown is rendered by
markdown-it-py with raw HTML off (a `<script>` is shown as text) and links only to http(s), mailto and
paths on this page; anything else (javascript:, data:, file:, vbscript:) stays as plain text. Everything
else on the page goes through Jinja2's autoescape. The SVG is built here from numbers, with every label
escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

SAFE_LINK = re.compile(r"^(?:https?:|mailto:|[/#?.]|[^:/?#]*(?:[/?#]|$))", re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def safe_link(url: str) -> bool:
    """http(s), mailto, or a relative link; no other scheme (whitespace and control characters removed
    first, as a browser would)."""
    return bool(SAFE_LINK.match(CONTROL.sub("", url)))


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = safe_link  # type: ignore[method-assign]
    md.disable("image")  # a memory's page loads nothing on its behalf
    return md


_MD = _markdown()


def markdown(text: str) -> Markup:
    """A memory's Markdown as HTML that runs nothing: raw HTML escaped, unsafe links left as text."""
    return Markup(_MD.render(text or ""))


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add, del, hunk, meta or ctx
    text: str


def diff_lines(diff: str) -> list[DiffLine]:
    """A unified diff as classified lines (the template escapes their text)."""
    out = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---", "diff ", "index ", "new file", "deleted file", "```")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out


W, H, PAD = 560, 150, 34


def chart(
    title: str, points: list[tuple[str, float]], *, unit: str = "", fixed_max: float | None = None
) -> Markup:
    """A line chart of (day, value) as inline SVG: no script, no style, every label escaped."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{PAD}" y="{H // 2}" class="chart-empty">no data yet</text></svg>')
        return Markup("".join(parts))
    top = fixed_max if fixed_max is not None else max(v for _, v in points) or 1.0
    n = len(points)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD + (W - 2 * PAD) * (i / (n - 1) if n > 1 else 0.5)
        y = H - PAD + 10 - (H - PAD - 10) * (v / top if top else 0)
        return round(x, 1), round(y, 1)

    coords = [xy(i, v) for i, (_, v) in enumerate(points)]
    parts.append(f'<line x1="{PAD}" y1="{H - PAD + 10}" x2="{W - PAD}" y2="{H - PAD + 10}" class="axis"/>')
    parts.append(f'<text x="2" y="26" class="chart-label">{escape(_num(top))}{escape(unit)}</text>')
    parts.append(f'<text x="2" y="{H - PAD + 10}" class="chart-label">0</text>')
    if n > 1:
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline points="{path}" class="line" fill="none"/>')
    for (x, y), (day, v) in zip(coords, points, strict=True):
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="2.5" class="dot"><title>{escape(day)}: {escape(_num(v))}</title></circle>'
        )
    parts.append(f'<text x="{PAD}" y="{H - 4}" class="chart-label">{escape(points[0][0])}</text>')
    if n > 1:
        parts.append(
            f'<text x="{W - PAD}" y="{H - 4}" class="chart-label" text-anchor="end">{escape(points[-1][0])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(v: Any) -> str:
    return f"{v:,.0f}" if float(v) >= 10 or float(v) == int(v) else f"{v:.3f}"
