"""HTML building blocks for luodi's single-file pages (the evaluation report, run comparisons).

A page is one self-contained file: inline CSS, images as data URIs, no script that runs, no font or file fetched.
Every user-supplied string (column names, class labels, config values, file names) goes through `escape`.
Numbers shown rounded carry their exact value in a `data-value` attribute, and the page's numbers are also in a
JSON block (`<script type="application/json" id="luodi-data">`, which browsers never execute), so a test or a
tool reads the same values a person sees.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
:root { --ink: #1f2430; --muted: #5b6270; --line: #dde1e8; --soft: #f5f7fa; --accent: #2f5fa7; --bad: #b3261e;
        --good: #1e7b34; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { padding: 22px 32px 14px; border-bottom: 1px solid var(--line); background: var(--soft); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 32px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1280px; }
section { margin-top: 26px; }
h2 { font-size: 18px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
p.note { color: var(--muted); margin: 4px 0 10px; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 150px; background: #fff; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 17px; font-weight: 600; }
.grid { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worst td { background: #fdf1f0; }
td.best { color: var(--good); font-weight: 600; }
td.diff { background: #fff6db; }
.bad { color: var(--bad); }
img.plot { max-width: 100%; height: auto; display: block; margin: 6px 0 4px; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
footer { color: var(--muted); font-size: 12px; padding: 16px 32px; border-top: 1px solid var(--line); }
"""


def escape(value: Any) -> str:
    """Any value as safe HTML text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A number as shown in tables: floats rounded to `digits` decimals, integers as they are, NaN as '—'."""
    if value is None or isinstance(value, float) and not math.isfinite(value):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def exact(value: Any) -> str:
    """The exact value for a data-value attribute: Python's repr of a float round-trips, like JSON's."""
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return escape(json.dumps(value))


def cell(value: Any, *, digits: int = 4, name: str | None = None, classes: str = "", suffix: str = "") -> str:
    """A table cell: text cells escaped; number cells right-aligned with their exact value in data-value.

    `suffix` is text shown after the value (a marker such as ' ★'), escaped here too.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) or value is None:
        attributes = f' data-value="{exact(value)}"'
        if name is not None:
            attributes += f' data-name="{escape(name)}"'
        return f'<td class="num {classes}"{attributes}>{number(value, digits)}{escape(suffix)}</td>'
    css = f' class="{classes}"' if classes else ""
    return f"<td{css}>{escape(value)}{escape(suffix)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = (),
          table_id: str | None = None, row_classes: Sequence[str] | None = None) -> str:
    """An HTML table from header texts (escaped here) and rows of ready-made cells (see `cell`)."""
    head = "".join(f'<th class="num">{escape(h)}</th>' if index in numeric else f"<th>{escape(h)}</th>"
                   for index, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{css}>{''.join(row)}</tr>")
    identity = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{identity}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(data_uri: str, alt: str) -> str:
    return f'<img class="plot" src="{escape(data_uri)}" alt="{escape(alt)}">'


def card(label: str, value: str) -> str:
    """A summary card; `value` is HTML made by the caller (escape user text first)."""
    return f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{value}</div></div>'


def json_block(data: Any, block_id: str = "luodi-data") -> str:
    """Data as a JSON script block that cannot end early: '<', '>' and '&' are written as \\u escapes."""
    text = json.dumps(clean(data), sort_keys=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(block_id)}">{text}</script>'


def clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null (as in `--json` output), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]], data: Any, footer: str) -> str:
    """A whole page: `sections` are (anchor id, heading, HTML body); the heading and title are escaped here."""
    nav = "".join(f'<a href="#{escape(anchor)}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(f'<section id="{escape(anchor)}"><h2>{escape(heading)}</h2>{content}</section>'
                   for anchor, heading, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header><nav>{nav}</nav><main>{body}</main>"
        f"<footer>{escape(footer)}</footer>{json_block(data)}</body></html>\n"
    )
