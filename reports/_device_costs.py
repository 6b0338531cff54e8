"""Per-device memory, energy and compute of one trial, as bars (one panel each).

Units and axis ranges are chosen over the whole study, so switching trials compares like with
like. Memory is the partition's own weights and activations (what the ``mem`` objective
counts); the runtime constant every device also holds is named in the panel title.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports._frames import (
    ENERGY_UNITS,
    FLOP_UNITS,
    MEMORY_UNITS,
    DisplayUnit,
    device_values,
    finite,
    indexed_columns,
    pick_unit,
    row_provenance,
)
from reports._input import ReportInput
from reports._patch import Patch, apply_patch, patch
from reports._provenance import cost_subtitle
from reports._style import base_layout, title

__all__ = [
    "CostPanel",
    "DeviceCostsInfo",
    "device_costs_info",
    "device_costs_patch",
    "plot_device_costs",
]

# (column figure, panel title, display units), in panel order
_PANELS = (
    ("partition_mb", "memory", MEMORY_UNITS),
    ("energy_j", "energy / image", ENERGY_UNITS),
    ("gflops", "compute / image", FLOP_UNITS),
)
_COLORS = ("#4c78a8", "#f58518", "#54a24b")


@dataclass(frozen=True)
class CostPanel:
    """One panel: a per-device figure in its display unit."""

    figure: str  # the record's per-device figure, e.g. ``energy_j``
    title: str
    unit: DisplayUnit
    values: tuple[float, ...]  # per device, in ``unit``
    upper: float  # axis upper bound: the study's largest value, in ``unit``


@dataclass(frozen=True)
class DeviceCostsInfo:
    """One trial's per-device memory, energy and compute."""

    trial: int
    devices: tuple[str, ...]
    panels: tuple[CostPanel, ...]
    runtime_mb: float  # memory each device holds beyond the partition (0: none recorded)
    subtitle: str


def device_costs_info(data: ReportInput, trial: int) -> DeviceCostsInfo:
    """``trial``'s per-device figures, in units (and axis ranges) chosen over the study."""
    row = data.row(trial)
    panels = tuple(
        CostPanel(figure, name, unit, tuple(unit.apply(device_values(row, figure))), upper)
        for figure, name, unit, upper in _study_scales(data)
    )
    count = max((len(p.values) for p in panels), default=0)
    return DeviceCostsInfo(
        trial=trial,
        devices=tuple(f"d{d}" for d in range(count)),
        panels=panels,
        runtime_mb=_runtime_mb(row),
        subtitle=cost_subtitle(data, row_provenance(row)),
    )


@lru_cache(maxsize=8)  # one study's report asks once per trial
def _study_scales(data: ReportInput) -> tuple[tuple[str, str, DisplayUnit, float], ...]:
    """Per panel with data: (figure, title, display unit, axis upper bound in that unit)."""
    done = data.completed
    scales = []
    for figure, name, units in _PANELS:
        columns = indexed_columns(done.columns, figure, "d")
        if not columns:
            continue
        every = finite(done[columns].to_numpy(float).ravel())
        unit = pick_unit(every, units)
        scales.append((figure, name, unit, max(unit.apply(every), default=1.0) * 1.08 or 1.0))
    return tuple(scales)


def _runtime_mb(row: pd.Series) -> float:
    total, partition = device_values(row, "memory_mb"), device_values(row, "partition_mb")
    gaps = finite(t - p for t, p in zip(total, partition, strict=False))
    return max(gaps, default=0.0)


# ------------------------------------------------------------------------------ plot
def plot_device_costs(info: DeviceCostsInfo) -> go.Figure:
    """One bar panel per figure, devices across."""
    columns = max(len(info.panels), 1)
    fig = make_subplots(
        rows=1, cols=columns, subplot_titles=[_panel_title(p) for p in info.panels]
    )
    for j, panel in enumerate(info.panels):
        fig.add_trace(
            go.Bar(
                x=list(info.devices),
                marker={"color": _COLORS[j % len(_COLORS)]},
                name=panel.title,
                hovertemplate=f"device %{{x}}: %{{y:.4g}} {panel.unit.symbol}<extra></extra>",
            ),
            row=1,
            col=j + 1,
        )
        fig.update_yaxes(range=[0, panel.upper], row=1, col=j + 1)
    update = device_costs_patch(info)
    layout = base_layout(update["layout"]["title"], height=400)
    layout["margin"]["t"] += 22  # the panels' own titles
    fig.update_layout(layout, showlegend=False)
    fig.update_annotations(font_size=12)
    return apply_patch(fig, update)


def device_costs_patch(info: DeviceCostsInfo) -> Patch:
    """What changes with the selected trial: the bars and the title."""
    subtitle = info.subtitle
    if info.runtime_mb > 0:
        subtitle += f" · memory: partition only (+ {info.runtime_mb:.0f} MB runtime per device)"
    return patch(
        {j: {"y": list(p.values)} for j, p in enumerate(info.panels)},
        {"title": title(f"Per-device costs: trial #{info.trial}", subtitle)},
    )


def _panel_title(panel: CostPanel) -> str:
    return f"{panel.title} ({panel.unit.symbol})"
