"""A recording's sleep report as one self-contained HTML file.

Everything is inside the file: the pictures as base64 PNGs, the style inline, no script and
no link out, so it opens from disk in any browser, can be mailed or archived, and shows the
same in ten years. Text from the data (series names, notes) is escaped.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sleepdetect.core.files import write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f2f2f2; } tr.extra td { color: #555; font-style: italic; }
tr.none td { color: #a33; } dl { display: grid; grid-template-columns: max-content auto; }
dt { font-weight: bold; margin-right: 1em; } img { max-width: 100%; }
"""


@dataclass
class Page:
    """What one page shows, top to bottom."""

    title: str
    facts: dict[str, str]  # the recording, the model and its version, settings
    table: pl.DataFrame  # the per-night rows
    pictures: dict[str, Path] = field(default_factory=dict)  # caption -> PNG
    notes: list[str] = field(default_factory=list)


def render(page: Page) -> str:
    """The HTML text of `page`."""
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in page.facts.items())
    pictures = "".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{_b64(png)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for caption, png in page.pictures.items()
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in page.notes) or "<li>none</li>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(page.title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{e(page.title)}</h1><dl>{facts}</dl>"
        f"<h2>Nights</h2>{table_html(page.table)}"
        f"<h2>Actogram</h2>{pictures}"
        f"<h2>Notes</h2><ul>{notes}</ul></body></html>\n"
    )


def table_html(table: pl.DataFrame) -> str:
    """The table as an HTML table; extra periods and nights without sleep get their class."""
    e = html.escape
    shown = table.with_columns(
        pl.col(c).round(3) for c, t in table.schema.items() if t == pl.Float64
    ).with_columns(pl.all().cast(pl.String).fill_null(""))
    head = "".join(f"<th>{e(c)}</th>" for c in shown.columns)
    rows = []
    for row in shown.iter_rows(named=True):
        kind = "extra" if row.get("period") == "extra" else ""
        if not row.get("onset_time") and "period" in row:
            kind = "none"
        cells = "".join(f"<td>{e(v)}</td>" for v in row.values())
        rows.append(f'<tr class="{kind}">{cells}</tr>' if kind else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_page(page: Page, path: str | os.PathLike[str]) -> Path:
    """Write `page` to `path` atomically."""
    return write_text(path, render(page))


def _b64(png: Path) -> str:
    return base64.b64encode(Path(png).read_bytes()).decode("ascii")
