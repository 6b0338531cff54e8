"""The studies' figures: thin plotly renderers of the computed tables (one per model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studies._result import StudyData
from studies._spec import AblationSpec, FailureSweepSpec, ResourceSpec

__all__ = ["fig4_figures", "table1_figures", "table2_figures"]

COLORS = {
    "robustdice": "#1f63b4",
    "lop": "#d62728",
    "cdc": "#ff8c1a",
    "replication": "#2ca02c",
    "budgeted": "#9467bd",
    "random-clustering": "#8c8c8c",
    "random-copies": "#bcbd22",
}
PAPER_MARKER: dict[str, Any] = {"symbol": "diamond", "size": 10, "color": "#111"}


def _layout(title: str, subtitle: str, *, height: int = 440) -> dict[str, Any]:
    return {
        "title": {"text": f"{title}<br><sup>{subtitle}</sup>", "x": 0.01, "xanchor": "left"},
        "template": "plotly_white",
        "height": height,
        "barmode": "group",
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 60, "r": 20, "t": 80, "b": 80},
    }


def _models(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["model"]))


def table1_figures(spec: AblationSpec, data: StudyData) -> list[go.Figure]:
    """Per model and target: worst-case Top-1 by score subset, bars per method (mean over
    seeds, error bar = std), each seed as a dot, the paper's value as a diamond."""
    table, details = data.table, data.details
    assert details is not None  # the ablation always keeps its per-seed rows
    figures = []
    for (model, target), cell in table.groupby(["model", "replication_target"], sort=False):
        fig = go.Figure()
        for method, rows in cell.groupby("method", sort=False):
            fig.add_bar(
                name=str(rows["label"].iloc[0]),
                x=rows["scores"],
                y=rows["top1_worst_pct"],
                error_y={"type": "data", "array": rows["top1_worst_std"].fillna(0)},
                marker_color=COLORS.get(str(method)),
            )
        seeds = details[
            (details["model"] == model)
            & (details["replication_target"] == target)
            & (details["method"] == "robustdice")
        ]
        fig.add_scatter(
            name="RobustDiCE, each training seed",
            x=seeds["scores"],
            y=seeds["top1_worst_pct"],
            mode="markers",
            marker={"color": COLORS["robustdice"], "size": 6, "line": {"width": 1}},
            text=[f"seed {s}" for s in seeds["seed"]],
        )
        paper = cell[cell["paper_top1_pct"].notna()]
        if not paper.empty:
            fig.add_scatter(
                name=f"paper: RobustDiCE, {paper['paper_model'].iloc[0]} (ImageNet)",
                x=paper["scores"],
                y=paper["paper_top1_pct"],
                mode="markers",
                marker=PAPER_MARKER,
            )
        fig.update_layout(
            **_layout(
                f"{model}: Top-1 with {spec.failed} of {spec.num_devices} devices failed, "
                f"replication factor {target:g}",
                "worst case over the failure sets; bars: mean over training seeds, error bar: "
                "std; measured by failure simulation",
            )
        )
        fig.update_yaxes(title="Top-1 %")
        fig.update_xaxes(title="importance scores")
        figures.append(fig)
    return figures


def fig4_figures(spec: FailureSweepSpec, data: StudyData) -> list[go.Figure]:
    """Per model: one panel per device count, Top-1 by failed devices, bars per method
    (mean over failure sets, error bars to the worst and best set)."""
    table = data.table
    figures = []
    for model in _models(table):
        rows = table[table["model"] == model]
        devices = list(dict.fromkeys(rows["devices"]))
        fig = make_subplots(
            rows=1,
            cols=len(devices),
            subplot_titles=[f"{d} devices" for d in devices],
            shared_yaxes=True,
        )
        for col, nd in enumerate(devices, start=1):
            panel = (
                rows[rows["devices"] == nd]
                .groupby(["method", "failed"], sort=False)
                .mean(numeric_only=True)
            )
            for method in dict.fromkeys(rows["method"]):
                cell = panel.loc[method]
                fig.add_bar(
                    name=str(rows[rows["method"] == method]["label"].iloc[0]),
                    x=[f"{k} failed" for k in cell.index],
                    y=cell["top1_mean_pct"],
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": cell["top1_best_pct"] - cell["top1_mean_pct"],
                        "arrayminus": cell["top1_mean_pct"] - cell["top1_worst_pct"],
                    },
                    marker_color=COLORS.get(str(method)),
                    legendgroup=str(method),
                    showlegend=col == 1,
                    row=1,
                    col=col,
                )
            paper = rows[(rows["devices"] == nd) & rows["paper_top1_pct"].notna()]
            paper = paper[paper["method"] != "replication"]
            if not paper.empty:
                fig.add_scatter(
                    name="paper: AlexNet, ImageNet (RobustDiCE, LOP best case, Optimal)",
                    x=[f"{k} failed" for k in paper["failed"]],
                    y=paper["paper_top1_pct"],
                    mode="markers",
                    marker=PAPER_MARKER,
                    text=paper["label"],
                    legendgroup="paper",
                    showlegend=True,
                    row=1,
                    col=col,
                )
        fig.update_layout(
            **_layout(
                f"{model}: Top-1 under failed devices (RobustDiCE t = {spec.thresholds:g})",
                "bars: mean over every set of k failed devices; error bars: worst and best set; "
                "measured by failure simulation",
            )
        )
        fig.update_yaxes(title="Top-1 %", row=1, col=1)
        figures.append(fig)
    return figures


def table2_figures(spec: ResourceSpec, data: StudyData) -> list[go.Figure]:
    """Per model: energy, FPS and memory relative to the reference configuration, ours
    (estimated) beside the paper's (measured)."""
    table = data.table
    figures = []
    titles = {
        "max_energy_j": "max energy / device",
        "fps": "throughput",
        "max_memory_mb": "max memory / device",
    }
    for model in _models(table):
        rows = (
            table[table["model"] == model]
            .groupby("configuration", sort=False)
            .mean(numeric_only=True)
        )
        fig = make_subplots(rows=1, cols=3, subplot_titles=list(titles.values()))
        for col, figure in enumerate(titles, start=1):
            for source, color in (("estimated", COLORS["robustdice"]), ("paper", "#444")):
                values = rows[f"{source}_{figure}_vs_ref"]
                if values.isna().all():
                    continue
                fig.add_bar(
                    name="ours, estimated" if source == "estimated" else "paper, measured",
                    x=list(rows.index),
                    y=values.replace({np.nan: None}),
                    marker_color=color,
                    legendgroup=source,
                    showlegend=col == 1,
                    row=1,
                    col=col,
                )
        fig.update_layout(
            **_layout(
                f"{model}: per-device cost relative to {spec.reference}",
                f"ours estimated by the cost model ({spec.device_profile}, {spec.link_profile}, "
                f"{spec.dtype}); paper measured on Jetson Xavier NX; measured (ours): not yet",
                height=460,
            )
        )
        fig.update_yaxes(title=f"÷ {spec.reference}", row=1, col=1)
        figures.append(fig)
    return figures
