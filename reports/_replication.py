"""How much of each unit one trial replicates: copies computed / neurons, per layer
(1 = every neuron once, ND = full replication)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from reports._frames import unit_values
from reports._input import ReportInput
from reports._patch import Patch, apply_patch, patch
from reports._style import base_layout, title

__all__ = ["ReplicationInfo", "plot_replication", "replication_info", "replication_patch"]


@dataclass(frozen=True)
class ReplicationInfo:
    """One trial's replication factor per unit."""

    trial: int
    layers: tuple[str, ...]
    factors: tuple[float, ...]  # per unit
    devices: int
    overall: float  # the trial's replication factor over all units (NaN: not recorded)


def replication_info(data: ReportInput, trial: int) -> ReplicationInfo:
    """``trial``'s ``unit_replication[u<i>]`` columns, named by the units table's layers."""
    row = data.row(trial)
    factors = tuple(unit_values(row))
    overall = float(row["replication_factor"]) if "replication_factor" in row.index else None
    return ReplicationInfo(
        trial=trial,
        layers=_layers(data.units, len(factors)),
        factors=factors,
        devices=data.devices,
        overall=float("nan") if overall is None else overall,
    )


def _layers(units: pd.DataFrame, count: int) -> tuple[str, ...]:
    if units.empty or len(units) != count:
        return tuple(f"unit {u}" for u in range(count))
    return tuple(str(layer) for layer in units.sort_values("unit")["layer"])


# ------------------------------------------------------------------------------ plot
def plot_replication(info: ReplicationInfo) -> go.Figure:
    """One bar per unit; dotted lines at no and at full replication."""
    fig = go.Figure(
        go.Bar(
            x=list(info.layers),
            marker={"colorscale": "Blues", "cmin": 0.0, "cmax": float(info.devices)},
            hovertemplate="%{x}: %{y:.2f} copies per neuron<extra></extra>",
            name="replication",
        )
    )
    for level in (1.0, float(info.devices)):
        fig.add_hline(y=level, line={"dash": "dot", "color": "#777", "width": 1})
    update = replication_patch(info)
    fig.update_layout(base_layout(update["layout"]["title"], height=380), showlegend=False)
    ticks = list(range(info.devices + 1))
    labels = [_tick(level, info.devices) for level in ticks]
    fig.update_yaxes(
        title_text="copies / neuron",
        range=[0, info.devices * 1.08],
        tickvals=ticks,
        ticktext=labels,
    )
    fig.update_xaxes(tickangle=-35 if len(info.layers) > 6 else 0, automargin=True)
    return apply_patch(fig, update)


def _tick(level: int, devices: int) -> str:
    if level == 1:
        return "1 none"
    return f"{level} full" if level == devices else str(level)


def replication_patch(info: ReplicationInfo) -> Patch:
    """What changes with the selected trial: the bars, their colours, the title."""
    overall = f" (overall {info.overall:.2f}×)" if info.overall == info.overall else ""
    subtitle = (
        f"copies computed / neurons, per unit, on {info.devices} devices{overall}; "
        "exact: read from the partition"
    )
    return patch(
        {0: {"y": list(info.factors), "marker": {"color": list(info.factors)}}},
        {"title": title(f"Replication per unit: trial #{info.trial}", subtitle)},
    )
