"""A study's self-contained HTML page: provenance, findings, figures, the table.

plotly.js is inlined with the first figure (as `reports` does), so the page opens offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from studies._result import StudyData, Verdict
from studies._spec import StudySpec

__all__ = ["render_page"]

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
VERDICT_CLASS = {
    Verdict.CONFIRMED: "ok",
    Verdict.NOT_CONFIRMED: "no",
    Verdict.MIXED: "mixed",
    Verdict.OURS_ONLY: "info",
}


def render_page(
    spec: StudySpec, data: StudyData, figures: Sequence[go.Figure], *, elapsed_s: float
) -> str:
    """The whole page as text."""
    parts = [
        f"<h1>{_e(spec.paper)}: {_e(spec.title)}"
        f'<span class="study">dse study run {_e(spec.name)}</span></h1>',
        f'<p class="meta">computed in {elapsed_s:.0f} s</p>',
        _section("Where the numbers come from", _list(data.provenance), "provenance"),
        _section("Models, weights and data", _list([s.describe() for s in data.sources])),
        _section("The paper's trends, checked", _findings(data)),
        *(_figure(fig, first=i == 0) for i, fig in enumerate(figures)),
        _section("Table (also in the CSV)", _table(data.table)),
    ]
    if data.notes:
        parts.append(_section("Notes", _list(data.notes)))
    body = "\n".join(parts)
    title = _e(f"{spec.paper}: {spec.title}")
    return _PAGE.format(title=title, css=_CSS, body=body)


def _e(text: object) -> str:
    return html.escape(str(text))


def _section(heading: str, inner: str, css: str = "") -> str:
    return f'<section class="card {css}"><h2>{_e(heading)}</h2>{inner}</section>'


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _findings(data: StudyData) -> str:
    if not data.findings:
        return "<p>No trend of the paper applies to this run.</p>"
    rows = "".join(
        f'<tr><td><span class="badge {VERDICT_CLASS[f.verdict]}">{_e(f.verdict.value)}</span>'
        f"</td><td>{_e(f.claim)}</td><td>{_e(f.ours)}</td></tr>"
        for f in data.findings
    )
    return (
        '<table class="findings"><tr><th>verdict</th><th>the paper</th><th>ours</th></tr>'
        f"{rows}</table>"
    )


def _figure(fig: go.Figure, *, first: bool) -> str:
    inner = fig.to_html(
        full_html=False, include_plotlyjs=first, config=PLOT_CONFIG, default_width="100%"
    )
    return f'<section class="card">{inner}</section>'


def _table(table: pd.DataFrame) -> str:
    text = table.to_html(
        index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="data"
    )
    return f'<div class="scroll">{text}</div>'


_CSS = """
body { margin: 0; background: #f4f6f8; color: #1b1f24;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { padding: 16px 24px 32px; display: grid; gap: 16px; }
h1 { margin: 0; font-size: 21px; }
h1 .study { font: 600 14px ui-monospace, Menlo, Consolas, monospace; color: #1f63b4;
  margin-left: 10px; }
h2 { margin: 0 0 6px; font-size: 16px; }
.meta { margin: 0; color: #5b6470; }
.card { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 10px 14px;
  min-width: 0; }
.provenance { border-left: 4px solid #1f63b4; }
ul { margin: 4px 0; padding-left: 20px; }
table { border-collapse: collapse; }
.findings td, .findings th { text-align: left; vertical-align: top; padding: 4px 8px;
  border-top: 1px solid #eef0f2; }
.badge { font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 10px;
  white-space: nowrap; }
.badge.ok { background: #e6f4ea; color: #1e7a34; }
.badge.no { background: #fdecea; color: #b3261e; }
.badge.mixed { background: #fff4e0; color: #8a5300; }
.badge.info { background: #e8eef7; color: #1f63b4; }
.scroll { overflow-x: auto; }
table.data { font-size: 12px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: 3px 8px; border-top: 1px solid #eef0f2;
  text-align: right; white-space: nowrap; }
table.data th { position: sticky; top: 0; background: #fff; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""
