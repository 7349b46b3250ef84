"""The page around the sections: one HTML file with its CSS inline, nothing fetched from anywhere.

Screen, phone (400 px) and print: the layout is one column; on a phone each table row becomes a block of
labelled figures that wraps (no sideways scroll); plots are inline SVG at 100 % width; print drops the
navigation and keeps sections off page breaks where it can.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CSS = """
:root { --ink: #1d232a; --soft: #5b6570; --line: #d6dbe0; --card: #f4f6f8; --accent: #0072B2; --warn: #9a5b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 62rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.45rem; margin: 0.2rem 0; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 0.5rem; padding-bottom: 0.2rem; border-bottom: 1px solid var(--line); }
p.sub, .label, figcaption, .note { color: var(--soft); font-size: 0.85rem; }
nav { font-size: 0.85rem; margin: 0.5rem 0 0; display: flex; flex-wrap: wrap; gap: 0.15rem 0.8rem; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }  /* links wrap as a whole */
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(13rem, 1fr)); gap: 0.6rem; }
.card { background: var(--card); border-radius: 6px; padding: 0.6rem 0.8rem; }
.card .big { font-size: 1.35rem; font-weight: 600; }
.card .label { display: block; }
.where { display: inline-block; font-size: 0.72rem; padding: 0 0.35rem; border-radius: 3px;
         border: 1px solid var(--line); color: var(--soft); vertical-align: middle; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.4rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: var(--card); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n { white-space: nowrap; }
tr.chosen td { font-weight: 600; background: #e8f2fa; }
tr.more td { color: var(--soft); font-size: 0.78rem; font-weight: normal; padding-top: 0; overflow-wrap: anywhere; }
tr:has(+ tr.more) td { border-bottom: none; }
.lead { font-size: 1.05rem; margin: 0.3rem 0 0.6rem; }
.lead b { font-weight: 650; }
ul.next { margin: 0.4rem 0; padding-left: 1.2rem; }
td span[title] { text-decoration: underline dotted var(--line); }
figure { margin: 0.6rem 0; }
svg.plot { display: block; width: 100%; height: auto; max-width: 42rem; }
td.w { min-width: 14rem; }
ul.warnings li { color: var(--warn); }
/* precision.py: a layer's precision as a badge, the colours of plots.py's BLUE, ORANGE, GREY */
.prec { display: inline-block; padding: 0 0.4rem; border-radius: 3px; white-space: nowrap; font-size: 0.8rem; }
.prec-int8 { background: #0072B2; color: #fff; }
.prec-int16 { background: #E69F00; color: #1d232a; }
.prec-float32 { background: #6b6b6b; color: #fff; }
ol.strip { list-style: none; padding: 0; margin: 0.4rem 0; display: flex; flex-wrap: wrap; gap: 0.25rem; }
ol.strip li { max-width: 100%; white-space: normal; overflow-wrap: anywhere; }
ul.legend { list-style: none; padding: 0; margin: 0.3rem 0 0.6rem; font-size: 0.85rem; }
ul.legend li { margin: 0.15rem 0; }
p.warn { color: var(--warn); }
@media (max-width: 600px) {
  body { font-size: 14px; }
  main { padding: 0.6rem; }
  .cards { grid-template-columns: 1fr; }
  /* A phone: each row becomes a block of labelled figures that wrap (no table is wider than the screen). */
  .scroll table, .scroll tbody, .scroll tr { display: block; }
  .scroll thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
  .scroll tr { border-bottom: 1px solid var(--line); padding: 0.3rem 0; }
  .scroll td { display: inline-block; border: none; padding: 0.05rem 0.9rem 0.05rem 0; min-width: 0;
               overflow-wrap: anywhere; }
  .scroll td.n { white-space: normal; }
  .scroll td[data-label]::before { content: attr(data-label) " "; color: var(--soft); font-size: 0.75rem;
                                   font-weight: normal; }
  .scroll td:empty { display: none; }
  .scroll tr.chosen { background: #e8f2fa; }  /* the row's block, not each figure, is highlighted */
  .scroll tr.chosen td { background: none; }
  tr.more td { display: block; padding: 0; }
}
@media print {
  nav { display: none; }
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  section { break-inside: avoid-page; }
  figure, table, .card { break-inside: avoid; }
  .scroll { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""


# The browser itself refuses any fetch: a page that tried would show a console error, not a request.
POLICY = "default-src 'none'; style-src 'unsafe-inline'"


class Raw(str):
    """Cell content that is already HTML."""


@dataclass(frozen=True)
class Section:
    """One part of the page: an anchor id, a heading and its HTML body."""

    id: str
    title: str
    body: str


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A figure as text: ints with separators, floats to `digits` significant places, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}g}"
    return str(value)


def num(value: object, field: str) -> str:
    """A headline figure as the manifest has it (ints with separators), tagged with where it came from (data-field)."""
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return f'<span class="num" data-field="{esc(field)}">{esc(text)}</span>'


def where(label: str) -> str:
    """Where a figure was measured: host-measured, estimate, device-measured."""
    return f'<span class="where">{esc(label)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
          highlight: Sequence[bool] = (), details: Sequence[str] = ()) -> str:
    """An HTML table; columns in `numeric` are right-aligned, cells of words (str longer than a few
    words) get room and wrap; Raw cells are HTML. `details`: per row, HTML for a second, full-width line
    under it (notes, the verdict in full), so that the columns stay few enough to fit the page."""
    marks, more = list(highlight), list(details)
    head = "".join(f'<th{_n(i, numeric)}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = ' class="chosen"' if r < len(marks) and marks[r] else ""
        cells = "".join(f"<td{_n(i, numeric) or _w(c)}{_label(headers, i)}>{_cell(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
        if r < len(more) and more[r]:
            body.append(f'<tr class="more{" chosen" if cls else ""}"><td></td>'
                        f'<td colspan="{len(headers) - 1}">{more[r]}</td></tr>')
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def abbr(full: object, short: str) -> Raw:
    """A long name shown short, the whole of it on hover (and to screen readers); it may wrap after a separator
    between names ('+' between fused layers, '/' and ';' in a TFLite op's name), not inside one name."""
    text, shown = str(full), re.sub(r"([/;+])", r"\1<wbr>", esc(short))
    return Raw(shown if short == text else f'<span title="{esc(text)}">{shown}</span>')


def shorten(name: str, limit: int = 32) -> str:
    """A long name cut at a separator, never inside a word: its last parts (which name the op or layer), after
    an ellipsis; a single word longer than `limit` is kept whole."""
    if len(name) <= limit:
        return name
    parts = re.split(r"(?<=[/;+: ])", name)
    kept = ""
    for part in reversed(parts):
        if kept and len(part) + len(kept) + 1 > limit:
            break
        kept = part + kept
    return "…" + kept if kept != name else name


def _cell(value: object) -> str:
    return value if isinstance(value, Raw) else esc(fmt(value))


def _w(value: object) -> str:
    return ' class="w"' if isinstance(value, str) and value.count(" ") >= 4 else ""


def _label(headers: Sequence[str], i: int) -> str:
    """The column's header on each cell: a phone's layout shows it before the figure (the header row is hidden)."""
    return f' data-label="{esc(headers[i])}"' if i < len(headers) and headers[i] else ""


def _n(i: int, numeric: Sequence[int]) -> str:
    return ' class="n"' if i in numeric else ""


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def document(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page. No script, no link, no image URL: the file is all there is."""
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    parts = "".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main><header><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
            f"<nav>{nav}</nav></header>{parts}</main></body></html>\n")
