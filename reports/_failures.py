"""Top-1 under k failed devices (the paper's Fig. 4): worst, mean and best over the failure
sets of each size k, for the selected trial beside the baselines, with its no-failure level."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports._frames import failure_columns
from reports._input import ReportInput
from reports._patch import Patch, apply_patch, patch
from reports._provenance import accuracy_subtitle
from reports._style import TRIAL_COLOR, base_layout, baseline_color, title

__all__ = [
    "FailureAccuracyInfo",
    "FailureSeries",
    "failure_accuracy_info",
    "failure_accuracy_patch",
    "failure_series",
    "plot_failure_accuracy",
]


@dataclass(frozen=True)
class FailureSeries:
    """One method's Top-1 % per failure size (NaN and 0 sets where none was evaluated)."""

    label: str
    method: str | None  # a baseline's registry name; None for a trial
    worst: tuple[float, ...]
    mean: tuple[float, ...]
    best: tuple[float, ...]
    sets: tuple[int, ...]


@dataclass(frozen=True)
class FailureAccuracyInfo:
    """Top-1 per failure size for a trial and the baselines."""

    trial: int
    sizes: tuple[int, ...]  # 0 .. ND - 1
    series: tuple[FailureSeries, ...]  # the trial first, then the baselines
    subtitle: str

    @property
    def no_failure(self) -> float:
        return self.series[0].mean[0] if self.series else math.nan

    @property
    def not_evaluated(self) -> tuple[int, ...]:
        return tuple(k for k, n in zip(self.sizes, self.series[0].sets, strict=True) if not n)


def failure_series(
    row: pd.Series, sizes: Sequence[int], label: str, method: str | None = None
) -> FailureSeries:
    """Worst / mean / best of the row's ``top1_pct[...]`` columns, grouped by failure size."""
    by_size: dict[int, list[float]] = {k: [] for k in sizes}
    for column, k in failure_columns(row.index).items():
        value = float(row[column]) if pd.notna(row[column]) else math.nan
        if k in by_size and math.isfinite(value):
            by_size[k].append(value)
    stats = [
        (min(v), statistics.fmean(v), max(v)) if v else (math.nan,) * 3 for v in by_size.values()
    ]
    return FailureSeries(
        label=label,
        method=method,
        worst=tuple(s[0] for s in stats),
        mean=tuple(s[1] for s in stats),
        best=tuple(s[2] for s in stats),
        sets=tuple(len(v) for v in by_size.values()),
    )


def failure_accuracy_info(data: ReportInput, trial: int) -> FailureAccuracyInfo:
    """``trial``'s series (from its ``top1_pct[...]`` columns), then each baseline's."""
    sizes = tuple(range(data.devices))
    series = [failure_series(data.row(trial), sizes, f"trial #{trial}")]
    series.extend(_baseline_series(data))
    missing = [str(k) for k, n in zip(sizes, series[0].sets, strict=True) if not n]
    subtitle = accuracy_subtitle(data)
    if missing:
        subtitle += f" · k = {', '.join(missing)} not evaluated by this study"
    return FailureAccuracyInfo(trial, sizes, tuple(series), subtitle)


@lru_cache(maxsize=8)  # the same for every trial of a report
def _baseline_series(data: ReportInput) -> tuple[FailureSeries, ...]:
    sizes = tuple(range(data.devices))
    return tuple(
        failure_series(row, sizes, str(row["label"]), str(row["method"]))
        for _, row in data.baselines.iterrows()
    )


# ------------------------------------------------------------------------------ plot
def plot_failure_accuracy(info: FailureAccuracyInfo) -> go.Figure:
    """Grouped bars (mean) with whiskers to worst and best; a dashed no-failure line."""
    fig = go.Figure([_bars(s, info.sizes, _color(s)) for s in info.series])
    fig.add_trace(
        go.Scatter(
            x=_categories(info.sizes),
            mode="lines",
            line={"color": TRIAL_COLOR, "dash": "dash", "width": 1.5},
            hovertemplate="no failure: %{y:.1f} %<extra></extra>",
        )
    )
    update = failure_accuracy_patch(info)
    layout = base_layout(update["layout"]["title"], height=420)
    fig.update_layout(layout, barmode="group", bargap=0.25, bargroupgap=0.05)
    for k in info.not_evaluated:
        fig.add_annotation(
            x=_categories(info.sizes)[k],
            y=50,
            text="not evaluated",
            showarrow=False,
            font={"color": "#888", "size": 11},
        )
    fig.update_xaxes(title_text="failed devices k (of the study's devices)")
    fig.update_yaxes(title_text="Top-1 % (mean; whiskers: worst to best)", range=[0, 105])
    return apply_patch(fig, update)


def failure_accuracy_patch(info: FailureAccuracyInfo) -> Patch:
    """What changes with the selected trial: its bars, its no-failure line, the title."""
    trial = info.series[0]
    line = len(info.series)
    return patch(
        {
            0: {"name": trial.label, **_bar_data(trial)},
            line: {"y": [info.no_failure] * len(info.sizes), "name": f"no failure, {trial.label}"},
        },
        {"title": title(f"Top-1 under k failed devices: {trial.label}", info.subtitle)},
    )


def _bars(series: FailureSeries, sizes: Sequence[int], color: str) -> go.Bar:
    return go.Bar(
        x=_categories(sizes),
        name=series.label,
        marker={"color": color},
        hovertemplate=(
            "%{fullData.name}, %{x}<br>mean %{y:.1f} %<br>worst %{customdata[0]:.1f} · "
            "best %{customdata[1]:.1f}<br>%{customdata[2]} failure set(s)<extra></extra>"
        ),
        **_bar_data(series),
    )


def _bar_data(series: FailureSeries) -> dict[str, Any]:
    spans = list(zip(series.worst, series.mean, series.best, strict=True))
    return {
        "y": list(series.mean),
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": [best - mean for _, mean, best in spans],
            "arrayminus": [mean - worst for worst, mean, _ in spans],
            "color": "#333",
            "thickness": 1.2,
            "width": 3,
        },
        "customdata": [list(c) for c in zip(series.worst, series.best, series.sets, strict=True)],
    }


def _categories(sizes: Sequence[int]) -> list[str]:
    return [f"k = {k}" + (" (no failure)" if k == 0 else "") for k in sizes]


def _color(series: FailureSeries) -> str:
    return TRIAL_COLOR if series.method is None else baseline_color(series.method)
