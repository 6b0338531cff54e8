"""The Pareto front: which trials are on it, dominated or infeasible (info), and its plot
(2-D for two objectives, 3-D for three or more; `plot_scatter_matrix` shows every pair)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports._input import ObjectiveMeta, ReportInput
from reports._provenance import objectives_subtitle
from reports._style import (
    DOMINATED_OPACITY,
    FRONT_COLOR,
    INFEASIBLE_COLOR,
    SELECTED_NAME,
    base_layout,
    baseline_color,
    title,
)

__all__ = [
    "BaselinePoint",
    "ParetoFrontInfo",
    "PointSet",
    "coordinates",
    "front_traces",
    "hover_template",
    "non_dominated",
    "pareto_front_info",
    "plot_pareto_front",
]


@dataclass(frozen=True)
class PointSet:
    """Trials and their objective values (``values[i]`` belongs to ``trials[i]``)."""

    trials: tuple[int, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()

    def column(self, j: int) -> list[float]:
        return [v[j] for v in self.values]

    def __len__(self) -> int:
        return len(self.trials)


@dataclass(frozen=True)
class BaselinePoint:
    """A baseline's objective values, as a labelled reference point."""

    method: str
    label: str
    values: tuple[float, ...]
    feasible: bool


@dataclass(frozen=True)
class ParetoFrontInfo:
    """Completed trials split three ways, the baselines, and the selected trial."""

    objectives: tuple[ObjectiveMeta, ...]
    front: PointSet
    dominated: PointSet
    infeasible: PointSet
    baselines: tuple[BaselinePoint, ...]
    selected: int | None
    subtitle: str

    @property
    def axis_titles(self) -> tuple[str, ...]:
        return tuple(o.axis_title for o in self.objectives)

    def point_of(self, trial: int) -> tuple[float, ...] | None:
        for points in (self.front, self.dominated, self.infeasible):
            if trial in points.trials:
                return points.values[points.trials.index(trial)]
        return None


def non_dominated(values: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """``[n, m]`` objective values -> for each point, whether no other point dominates it
    (at least as good in every objective, better in one). Equal points are both kept."""
    if len(values) == 0:
        return []
    signs = [-1.0 if up else 1.0 for up in maximize]
    points = pd.DataFrame(list(values), dtype=float).to_numpy() * signs  # minimise all
    le = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    lt = (points[:, None, :] < points[None, :, :]).any(axis=2)
    return [not dominated for dominated in (le & lt).any(axis=0).tolist()]


def pareto_front_info(data: ReportInput, selected: int | None = None) -> ParetoFrontInfo:
    """Front = non-dominated feasible completed trials; dominated = the other feasible ones;
    infeasible = completed trials that break a constraint (never on the front).

    ``selected`` defaults to ``data.default_trial``.
    """
    names = data.objective_names
    done = data.completed
    feasible = done["feasible"].astype(bool)
    on_front = pd.Series(False, index=done.index)
    maximize = [o.maximize for o in data.objectives]
    if feasible.any():
        on_front[feasible] = non_dominated(done.loc[feasible, names].to_numpy(float), maximize)
    return ParetoFrontInfo(
        objectives=data.objectives,
        front=_points(done[on_front], names),
        dominated=_points(done[feasible & ~on_front], names),
        infeasible=_points(done[~feasible], names),
        baselines=_baselines(data.baselines, names),
        selected=data.default_trial if selected is None else selected,
        subtitle=objectives_subtitle(data, data.objectives),
    )


def _points(rows: pd.DataFrame, names: Sequence[str]) -> PointSet:
    return PointSet(
        trials=tuple(int(n) for n in rows["trial"]),
        values=tuple(tuple(float(v) for v in row) for row in rows[list(names)].to_numpy(float)),
    )


def _baselines(frame: pd.DataFrame, names: Sequence[str]) -> tuple[BaselinePoint, ...]:
    if frame.empty:
        return ()
    return tuple(
        BaselinePoint(
            method=str(row["method"]),
            label=str(row["label"]),
            values=tuple(float(row[n]) for n in names),
            feasible=bool(row["feasible"]),
        )
        for _, row in frame.iterrows()
    )


# ------------------------------------------------------------------------------ plot
def plot_pareto_front(info: ParetoFrontInfo) -> go.Figure:
    """2-D scatter (3-D for three or more objectives; one objective: value per trial)."""
    three_d = len(info.objectives) >= 3
    fig = go.Figure(data=front_traces(info, three_d=three_d))
    names = " vs ".join(o.name for o in info.objectives[:3])
    fig.update_layout(
        base_layout(title(f"Pareto front: {names}", info.subtitle, width=140), height=600)
    )
    titles = info.axis_titles
    if three_d:
        axis = {"tickfont": {"size": 10}}
        fig.update_layout(
            scene={
                "xaxis": {"title": {"text": titles[0], "font": {"size": 11}}, **axis},
                "yaxis": {"title": {"text": titles[1], "font": {"size": 11}}, **axis},
                "zaxis": {"title": {"text": titles[2], "font": {"size": 11}}, **axis},
                "aspectmode": "cube",
                "camera": {
                    "eye": {"x": 1.4, "y": -1.4, "z": 0.75},
                    "center": {"x": 0.0, "y": 0.0, "z": -0.28},
                },
                "domain": {"x": [0, 1], "y": [0, 1]},
            },
            margin={"l": 0, "r": 0, "b": 40},
            legend={"y": -0.02},
        )
    elif len(titles) == 1:
        fig.update_xaxes(title_text="trial number")
        fig.update_yaxes(title_text=titles[0])
    else:
        fig.update_xaxes(title_text=titles[0])
        fig.update_yaxes(title_text=titles[1])
    return fig


def front_traces(info: ParetoFrontInfo, *, three_d: bool) -> list[Any]:
    """Dominated, infeasible, front, one trace per baseline, then the selected trial."""
    dims = 3 if three_d else min(len(info.objectives), 2)
    hover = hover_template([o.name for o in info.objectives], dims)
    traces = [
        _markers(info.dominated, dims, "dominated", hover)
        | {"marker": _marker(FRONT_COLOR, 7, "circle", dims), "opacity": DOMINATED_OPACITY},
        _markers(info.infeasible, dims, "infeasible", hover)
        | {"marker": _marker(INFEASIBLE_COLOR, 8, "x", dims), "opacity": 0.8},
        _front(info.front, dims, hover),
    ]
    last = max((*info.front.trials, *info.dominated.trials, *info.infeasible.trials), default=0)
    traces += [_baseline(b, dims, last, hover) for b in info.baselines]
    traces.append(_selected(info, dims, hover))
    return [(go.Scatter3d if dims == 3 else go.Scatter)(**t) for t in traces]


def coordinates(points: PointSet, dims: int) -> dict[str, list[float]]:
    """Plot coordinates: one objective -> (trial number, value); else the first ``dims``."""
    if dims == 1:
        return {"x": [float(t) for t in points.trials], "y": points.column(0)}
    return {axis: points.column(j) for j, axis in enumerate("xyz"[:dims])}


def hover_template(names: Sequence[str], dims: int, head: str = "trial #%{customdata}") -> str:
    """``head``, then one ``name = value`` line per plotted objective."""
    axes = "xyz"[:dims] if dims > 1 else "y"
    lines = [f"{name} = %{{{axis}:.4g}}" for name, axis in zip(names, axes, strict=False)]
    return "<br>".join([head, *lines]) + "<extra>%{fullData.name}</extra>"


def _markers(points: PointSet, dims: int, name: str, hover: str) -> dict[str, Any]:
    return {
        **coordinates(points, dims),
        "mode": "markers",
        "name": name,
        "customdata": list(points.trials),
        "hovertemplate": hover,
    }


def _marker(color: str, size: int, symbol: str, dims: int) -> dict[str, Any]:
    return {"color": color, "size": size if dims < 3 else size - 3, "symbol": symbol}


def _front(points: PointSet, dims: int, hover: str) -> dict[str, Any]:
    trace = _markers(points, dims, "Pareto front", hover)
    trace["marker"] = _marker(FRONT_COLOR, 10, "circle", dims)
    if dims == 2 and len(points) > 1:  # connect the front in the order of its x values
        order = sorted(range(len(points)), key=lambda i: points.values[i][0])
        ordered = PointSet(
            tuple(points.trials[i] for i in order), tuple(points.values[i] for i in order)
        )
        trace.update(coordinates(ordered, dims), customdata=list(ordered.trials))
        trace.update(mode="lines+markers", line={"color": FRONT_COLOR, "dash": "dot", "width": 1})
    return trace


def _baseline(point: BaselinePoint, dims: int, last_trial: int, hover: str) -> dict[str, Any]:
    """A labelled marker; with one objective (no second axis) a labelled level line."""
    infeasible = "" if point.feasible else " (infeasible)"
    color = baseline_color(point.method)
    trace: dict[str, Any] = {
        "name": f"{point.label}{infeasible}",
        "textposition": "top center",
        "hovertemplate": hover.replace("trial #%{customdata}", f"baseline {point.label}"),
    }
    if dims == 1:
        return trace | {
            "x": [0.0, float(last_trial)],
            "y": [point.values[0]] * 2,
            "mode": "lines+text",
            "text": [point.label, ""],
            "line": {"color": color, "dash": "dash"},
        }
    return trace | {
        **coordinates(PointSet((-1,), (point.values,)), dims),
        "mode": "markers+text",
        "text": [point.label],
        "textfont": {"color": color},
        "marker": {
            "color": color,
            "size": 13 if dims < 3 else 8,
            "symbol": "diamond" if point.feasible else "diamond-open",
            "line": {"color": "#333", "width": 1},
        },
    }


def _selected(info: ParetoFrontInfo, dims: int, hover: str) -> dict[str, Any]:
    """A ring around the selected trial (empty without one); the page moves it on a click."""
    point = info.point_of(info.selected) if info.selected is not None else None
    points = PointSet((info.selected,), (point,)) if point and info.selected is not None else None
    ring = (
        {"color": "#111", "size": 14, "symbol": "circle-open"}
        if dims == 3
        else {"color": "rgba(0,0,0,0)", "size": 20, "line": {"color": "#111", "width": 3}}
    )
    axes = [-1, 0] if dims == 1 else list(range(dims))
    return {
        **_markers(points or PointSet(), dims, SELECTED_NAME, hover),
        "marker": ring,
        "showlegend": False,
        "meta": axes,  # per axis: the objective index it shows (-1: the trial number)
    }
