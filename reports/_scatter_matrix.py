"""Every pair of objectives side by side (the lower triangle of a scatter matrix), for studies
with three or more objectives. SVG subplots, not WebGL: it draws wherever the page opens."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports._pareto_front import ParetoFrontInfo, front_traces
from reports._style import base_layout, title

__all__ = ["plot_scatter_matrix"]


def plot_scatter_matrix(info: ParetoFrontInfo) -> go.Figure:
    """Cell (row r, column c), c <= r: objective c across, objective r + 1 up."""
    m = len(info.objectives)
    if m < 2:
        raise ValueError(f"a scatter matrix needs at least 2 objectives, got {m}.")
    size = m - 1
    fig = make_subplots(rows=size, cols=size, horizontal_spacing=0.06, vertical_spacing=0.06)
    for row in range(size):
        for col in range(size):
            if col > row:
                _hide(fig, row + 1, col + 1)
                continue
            for trace in _pair_traces(info, col, row + 1, first=row == 0 and col == 0):
                fig.add_trace(trace, row=row + 1, col=col + 1)
    for j in range(size):
        fig.update_xaxes(title_text=_short(info, j), row=size, col=j + 1)
        fig.update_yaxes(title_text=_short(info, j + 1), row=j + 1, col=1)
    names = ", ".join(o.name for o in info.objectives)
    layout = base_layout(title(f"Every pair of objectives ({names})", info.subtitle, width=180))
    fig.update_layout(layout, height=260 * size + 140)
    fig.update_layout(legend={"y": -0.3 / size})
    return fig


def _pair_traces(info: ParetoFrontInfo, i: int, j: int, *, first: bool) -> list[Any]:
    """The front figure's traces for objectives (i, j), in one legend group each."""
    pair = ParetoFrontInfo(
        objectives=(info.objectives[i], info.objectives[j]),
        front=_project(info.front, i, j),
        dominated=_project(info.dominated, i, j),
        infeasible=_project(info.infeasible, i, j),
        baselines=tuple(
            type(b)(b.method, b.label, (b.values[i], b.values[j]), b.feasible)
            for b in info.baselines
        ),
        selected=info.selected,
        subtitle=info.subtitle,
    )
    traces = front_traces(pair, three_d=False)
    traces[-1].update(meta=[i, j])  # the selected-trial ring: objectives shown across and up
    for trace in traces:
        trace.update(legendgroup=trace.name, showlegend=first and trace.showlegend is not False)
        # markers only: labels would crowd the small cells (hover names them), and a line
        # through the front would zig-zag, as a front of 3+ objectives does in projection
        trace.update(mode="markers")
    return traces


def _project(points: Any, i: int, j: int) -> Any:
    return type(points)(points.trials, tuple((v[i], v[j]) for v in points.values))


def _short(info: ParetoFrontInfo, j: int) -> str:
    objective = info.objectives[j]
    arrow = "↑" if objective.maximize else "↓"
    return f"{objective.name} {arrow} ({objective.label})"


def _hide(fig: go.Figure, row: int, col: int) -> None:
    fig.update_xaxes(visible=False, row=row, col=col)
    fig.update_yaxes(visible=False, row=row, col=col)
