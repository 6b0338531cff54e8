"""The report page: every figure, the detail panel and the per-trial data in one
self-contained HTML file (plotly.js inlined; it opens with no network)."""

from __future__ import annotations

import html
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from reports._assets import PAGE_CSS, PAGE_JS
from reports._detail import DETAIL_FIGURES, trial_details
from reports._frames import provenance_of
from reports._hypervolume import hypervolume_info, plot_hypervolume
from reports._input import ReportInput
from reports._parallel import parallel_coordinates_info, plot_parallel_coordinates
from reports._pareto_front import ParetoFrontInfo, pareto_front_info, plot_pareto_front
from reports._patch import jsonable
from reports._scatter_matrix import plot_scatter_matrix
from reports._style import PLOT_CONFIG

__all__ = ["initial_trial", "render_report", "write_report_html"]


def initial_trial(data: ReportInput) -> int | None:
    """The trial shown first: the default pick, else the first completed trial."""
    if data.default_trial is not None:
        return data.default_trial
    return data.completed_numbers[0] if data.completed_numbers else None


def render_report(data: ReportInput, *, color_by: str | None = None) -> str:
    """The whole page as text. ``color_by``: the objective that colours the thresholds'
    parallel coordinates (default: the first objective)."""
    initial = initial_trial(data)
    front = pareto_front_info(data, selected=initial)
    figures = _Figures(data, front, initial, color_by)
    payload = {
        "initial": initial,
        "front_figures": figures.front_ids,
        "trials": trial_details(data, front),
    }
    parts = {
        "title": html.escape(f"RobustDiCE report: {data.study}"),
        "css": PAGE_CSS,
        "header": _header(data, front, initial),
        "body": figures.body(),
        "footer": _footer(data),
        "data": _script_json(payload),
        "js": PAGE_JS,
    }
    # one pass, so text inserted for one placeholder is never read as another
    return re.sub(r"\{(\w+)\}", lambda m: parts[m.group(1)], _PAGE)


def write_report_html(data: ReportInput, path: Path, *, color_by: str | None = None) -> Path:
    """Render and write atomically (a reader never sees half a page); return ``path``.

    The file gets the mode any other tool would give it (0o666 less the umask).
    """
    text = render_report(data, color_by=color_by).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass
class _Figures:
    """Builds each figure once and lays them out; plotly.js goes in with the first."""

    data: ReportInput
    front: ParetoFrontInfo
    initial: int | None
    color_by: str | None
    _inlined: bool = False

    @property
    def front_ids(self) -> list[str]:
        return ["fig-front", "fig-matrix"] if len(self.data.objectives) >= 3 else ["fig-front"]

    def body(self) -> str:
        rows = [
            _row("top", self._div("fig-front", plot_pareto_front(self.front)) + _PANEL),
            _row("", self._detail("fig-failures") + self._detail("fig-devices")),
            _row("", self._detail("fig-replication") + self._hypervolume()),
        ]
        if len(self.data.objectives) >= 3:
            rows.append(_row("one", self._div("fig-matrix", plot_scatter_matrix(self.front))))
        rows.append(_row("one", self._parallel()))
        return "\n".join(rows)

    def _detail(self, div_id: str) -> str:
        if self.initial is None:
            return _card('<p class="empty">no completed trial yet</p>')
        return self._div(div_id, DETAIL_FIGURES[div_id].plot(self.data, self.initial))

    def _hypervolume(self) -> str:
        return self._div("fig-hypervolume", plot_hypervolume(hypervolume_info(self.data)))

    def _parallel(self) -> str:
        if not self.data.completed_numbers or not self.data.params:
            return _card('<p class="empty">no completed trial yet</p>')
        info = parallel_coordinates_info(self.data, color_by=self.color_by)
        return self._div("fig-parallel", plot_parallel_coordinates(info))

    def _div(self, div_id: str, fig: go.Figure) -> str:
        include = not self._inlined
        self._inlined = True
        return _card(
            fig.to_html(
                full_html=False,
                include_plotlyjs=include,
                div_id=div_id,
                config=PLOT_CONFIG,
                default_width="100%",
            )
        )


def _card(inner: str) -> str:
    return f'<div class="card">{inner}</div>'


def _row(kind: str, inner: str) -> str:
    return f'<section class="{f"row {kind}".strip()}">{inner}</section>'


def _header(data: ReportInput, front: ParetoFrontInfo, initial: int | None) -> str:
    trials = data.trials
    states = trials["state"].value_counts().to_dict()
    counts = (
        f"{len(trials)} trials: {len(data.completed_numbers)} completed, "
        f"{len(front.front) + len(front.dominated)} feasible, {len(front.front)} on the front"
    )
    failed = int(states.get("FAIL", 0))
    if failed:
        counts += f", {failed} failed"
    objectives = ", ".join(o.axis_title for o in data.objectives)
    pick = (
        f"selected first: trial #{initial} ({html.escape(data.default_rule)})"
        if data.default_trial is not None
        else "no feasible trial to pick: showing the first completed trial"
        if initial is not None
        else "no completed trial yet"
    )
    kind = provenance_of(data.trials)
    costs = "estimated by the cost model" if kind == "estimated" else kind
    return (
        f'<h1>RobustDiCE DSE report<span class="study">{html.escape(data.study)}</span></h1>'
        f'<p class="meta">{counts} · {data.devices} devices · storage '
        f"<code>{html.escape(data.storage)}</code></p>"
        f'<p class="meta">objectives: {html.escape(objectives)} · {pick}</p>'
        f'<p class="provenance"><strong>Costs {html.escape(costs)}</strong>'
        f"{_suffix(data.profile)} · <strong>Top-1</strong>: "
        f"{html.escape(data.accuracy_source or 'simulated device failures')}</p>"
    )


def _suffix(profile: str) -> str:
    return f" ({html.escape(profile)})" if profile else ""


def _footer(data: ReportInput) -> str:
    notes = [html.escape(n) for n in data.notes]
    notes += [html.escape(f"{o.name}: {o.description}") for o in data.objectives if o.description]
    if not notes:
        return ""
    items = "".join(f"<li>{n}</li>" for n in notes)
    return f"<footer><strong>Notes</strong><ul>{items}</ul></footer>"


def _script_json(payload: dict[str, Any]) -> str:
    """JSON that cannot end its script element: <, > and & are escaped as \\u003c etc."""
    text = json.dumps(jsonable(payload), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PANEL = """<aside class="card" id="detail">
<h2>Trial<span id="sel-trial">–</span><span id="sel-status" class="badge"></span></h2>
<table id="sel-rows"></table>
<div class="cmd-label">Deploy this trial</div>
<div class="cmd"><code id="deploy-cmd">(no trial selected)</code>
<button id="copy-btn" type="button" title="Copy the command">Copy</button></div>
<div id="copy-note" aria-live="polite"></div>
<div class="goto"><label for="goto-trial">Show trial #</label>
<input id="goto-trial" type="number" min="0" step="1">
<button id="goto-btn" type="button" class="secondary">Show</button>
<span id="goto-note"></span></div>
<p class="hint">Click a point of the front (or of the pairs below) to select that trial: this
panel and the per-trial figures follow. Faded points are dominated, crosses break a
constraint, diamonds are the baselines.</p>
</aside>"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>{header}</header>
<main>
{body}
</main>
{footer}
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
