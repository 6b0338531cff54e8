"""How the search progressed: hypervolume of the feasible front against trial number."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from reports._input import ReportInput
from reports._provenance import objectives_subtitle
from reports._style import FRONT_COLOR, base_layout, title

__all__ = ["HypervolumeInfo", "hypervolume_info", "plot_hypervolume"]


@dataclass(frozen=True)
class HypervolumeInfo:
    """Hypervolume after each completed trial."""

    trials: tuple[int, ...]
    values: tuple[float, ...]
    subtitle: str

    @property
    def final(self) -> float:
        return self.values[-1] if self.values else 0.0


def hypervolume_info(data: ReportInput) -> HypervolumeInfo:
    """The input's history, in trial order."""
    subtitle = (
        "feasible completed trials so far, in the study's reference box · "
        + objectives_subtitle(data, data.objectives)
    )
    frame = data.hypervolume
    if frame.empty:
        return HypervolumeInfo((), (), subtitle)
    frame = frame.sort_values("trial")
    return HypervolumeInfo(
        trials=tuple(int(n) for n in frame["trial"]),
        values=tuple(float(v) for v in frame["hypervolume"]),
        subtitle=subtitle,
    )


def plot_hypervolume(info: HypervolumeInfo) -> go.Figure:
    """A step line: hypervolume against trial number."""
    fig = go.Figure(
        go.Scatter(
            x=list(info.trials),
            y=list(info.values),
            mode="lines+markers",
            line={"shape": "hv", "color": FRONT_COLOR},
            marker={"size": 4},
            name="hypervolume",
            hovertemplate="after trial #%{x}: HV %{y:.4f}<extra></extra>",
        )
    )
    heading = f"Hypervolume by trial (final {info.final:.4f})"
    fig.update_layout(base_layout(title(heading, info.subtitle), height=380), showlegend=False)
    fig.update_xaxes(title_text="trial number")
    fig.update_yaxes(title_text="hypervolume ↑", rangemode="tozero")
    return fig
