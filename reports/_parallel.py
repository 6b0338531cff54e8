"""The thresholds of every completed trial as parallel coordinates: one axis per search
parameter, labelled with the layer(s) it sets, lines coloured by an objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports._input import ObjectiveMeta, ReportInput
from reports._provenance import objectives_subtitle
from reports._style import base_layout, title

__all__ = [
    "ParallelAxis",
    "ParallelCoordinatesInfo",
    "parallel_coordinates_info",
    "param_label",
    "plot_parallel_coordinates",
]

_FLAT_LABELS = 10  # up to this many axes, labels stay horizontal
_MAX_LABEL = 22  # characters of a layer name on an axis; the full name is in the hover table


@dataclass(frozen=True)
class ParallelAxis:
    """One search parameter: its layer label, its values per trial, its range."""

    param: str
    label: str  # the layer (or layers) the parameter sets
    values: tuple[float, ...]
    range: tuple[float, float]


@dataclass(frozen=True)
class ParallelCoordinatesInfo:
    """``colors`` holds every objective's values (for the colour menu), ``color_by`` the
    one shown first."""

    trials: tuple[int, ...]
    axes: tuple[ParallelAxis, ...]
    color_by: ObjectiveMeta
    objectives: tuple[ObjectiveMeta, ...]
    colors: dict[str, tuple[float, ...]]
    subtitle: str


def parallel_coordinates_info(
    data: ReportInput, color_by: str | None = None
) -> ParallelCoordinatesInfo:
    """Axes in parameter order; ``color_by`` defaults to the first objective."""
    by_name = {o.name: o for o in data.objectives}
    chosen = data.objectives[0].name if color_by is None else color_by
    if chosen not in by_name:
        raise ValueError(f"`color_by` must be one of {', '.join(by_name)}, got {chosen!r}.")
    done = data.completed
    axes = tuple(_axis(data.units, done, param) for param in data.params if param in done)
    return ParallelCoordinatesInfo(
        trials=tuple(int(n) for n in done["trial"]),
        axes=axes,
        color_by=by_name[chosen],
        objectives=data.objectives,
        colors={o.name: tuple(float(v) for v in done[o.name]) for o in data.objectives},
        subtitle=f"one line per completed trial ({len(done)}) · "
        + objectives_subtitle(data, data.objectives),
    )


def param_label(units: pd.DataFrame, param: str) -> str:
    """The layer a parameter sets; ``first +N`` when it is tied across N + 1 layers."""
    if units.empty:
        return param
    layers = [str(layer) for layer in units.loc[units["param"] == param, "layer"]]
    if not layers:
        return param
    first = _shorten(layers[0])
    return first if len(layers) == 1 else f"{first} +{len(layers) - 1}"


def _axis(units: pd.DataFrame, done: pd.DataFrame, param: str) -> ParallelAxis:
    values = tuple(float(v) for v in done[param])
    return ParallelAxis(param, param_label(units, param), values, _range(units, param, values))


def _range(units: pd.DataFrame, param: str, values: Sequence[float]) -> tuple[float, float]:
    rows = units.loc[units["param"] == param] if not units.empty else units
    if not rows.empty and {"low", "high"} <= set(units.columns):
        return float(rows["low"].min()), float(rows["high"].max())
    return (min(values, default=0.0), max(values, default=1.0))


def _shorten(layer: str) -> str:
    return layer if len(layer) <= _MAX_LABEL else f"…{layer[-(_MAX_LABEL - 1) :]}"


# ------------------------------------------------------------------------------ plot
def plot_parallel_coordinates(info: ParallelCoordinatesInfo) -> go.Figure:
    """One line per trial; a menu recolours the lines by another objective."""
    dimensions = [
        {"label": axis.label, "values": list(axis.values), "range": list(axis.range)}
        for axis in info.axes
    ]
    dimensions.append(_objective_dimension(info, info.color_by))
    fig = go.Figure(
        go.Parcoords(
            line=_line(info, info.color_by),
            dimensions=dimensions,
            labelangle=-25 if len(info.axes) > _FLAT_LABELS else 0,
            labelside="top",
        )
    )
    layout = base_layout(
        title("Thresholds per layer (normalised score scale)", info.subtitle, width=180),
        height=470,
    )
    labels = 95 if len(info.axes) > _FLAT_LABELS else 72  # room for the axis labels
    top = layout["margin"]["t"] + labels
    layout["margin"] = {"l": 60, "r": 60, "t": top, "b": 30}
    fig.update_layout(layout)
    if len(info.objectives) > 1:
        plot_height = layout["height"] - top - 30
        fig.update_layout(updatemenus=[_color_menu(info, y=1 + (top - 6) / plot_height)])
    return fig


def _line(info: ParallelCoordinatesInfo, objective: ObjectiveMeta) -> dict[str, Any]:
    return {
        "color": list(info.colors[objective.name]),
        "colorscale": "Viridis",
        "reversescale": not objective.maximize,  # yellow = better either way
        "showscale": True,
        "colorbar": {"title": {"text": objective.name, "side": "right"}},
    }


def _objective_dimension(
    info: ParallelCoordinatesInfo, objective: ObjectiveMeta
) -> dict[str, Any]:
    label = f"{objective.name} ({objective.label})"
    return {"label": label, "values": list(info.colors[objective.name])}


def _color_menu(info: ParallelCoordinatesInfo, *, y: float) -> dict[str, Any]:
    """A menu at the figure's top right (``y``: its top, in plot-area fractions)."""
    buttons = []
    for objective in info.objectives:
        line = _line(info, objective)
        last = _objective_dimension(info, objective)
        buttons.append(
            {
                "label": f"colour: {objective.name}",
                "method": "restyle",
                "args": [
                    {
                        "line": [line],
                        f"dimensions[{len(info.axes)}].label": last["label"],
                        f"dimensions[{len(info.axes)}].values": [last["values"]],
                    }
                ],
            }
        )
    active = [o.name for o in info.objectives].index(info.color_by.name)
    return {
        "buttons": buttons,
        "active": active,
        "direction": "down",
        "x": 1.0,
        "xanchor": "right",
        "y": y,
        "yanchor": "top",
        "showactive": True,
    }
