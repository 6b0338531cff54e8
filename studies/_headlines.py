"""Small text tables of what matters, for the terminal (the CSV has everything)."""

from __future__ import annotations

import math

import pandas as pd

from studies._result import StudyData

__all__ = ["fig4_headline", "table1_headline", "table2_headline"]


def _spread(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def table1_headline(data: StudyData) -> pd.DataFrame:
    """Rows: (model, R, scores); columns: methods, worst-case Top-1 % mean ± std over seeds."""
    table = data.table
    worst, std = table["top1_worst_pct"], table["top1_worst_std"]
    cells = [_spread(m, s) for m, s in zip(worst, std, strict=True)]
    frame = table.assign(cell=cells)
    wide = frame.pivot_table(
        index=["model", "replication_target", "scores"],
        columns="label",
        values="cell",
        aggfunc="first",
        sort=False,
    )
    paper = frame[frame["method"] == "robustdice"].set_index(
        ["model", "replication_target", "scores"]
    )["paper_top1_pct"]
    wide["paper"] = paper.map(lambda v: "" if math.isnan(v) else f"{v:.1f}")
    wide = wide.reset_index().rename(columns={"replication_target": "R"})
    return wide


def fig4_headline(data: StudyData) -> pd.DataFrame:
    """Rows: (model, ND, method); columns: k failed, worst / mean Top-1 % (mean over seeds)."""
    table = data.table
    means = table.groupby(["model", "devices", "label", "failed"], sort=False)[
        ["top1_worst_pct", "top1_mean_pct"]
    ].mean()
    cells = [f"{w:.1f} / {m:.1f}" for w, m in means.itertuples(index=False)]
    frame = means.assign(cell=cells).reset_index()
    wide = frame.pivot_table(
        index=["model", "devices", "label"],
        columns="failed",
        values="cell",
        aggfunc="first",
        sort=False,
    )
    wide.columns = [f"k={k}" for k in wide.columns]
    return wide.reset_index().rename(columns={"devices": "ND", "label": "method"})


def table2_headline(data: StudyData) -> pd.DataFrame:
    """Per model and configuration: energy, FPS and memory as ratios to the reference
    configuration, ours (estimated) / the paper's (measured); absolute values are in the CSV."""
    table = data.table.groupby(["model", "configuration"], sort=False).mean(numeric_only=True)
    out = pd.DataFrame(index=table.index)
    out["repl."] = table["replication_factor"].map(lambda v: f"{v:.2f}")
    for figure, name in (("max_energy_j", "J/img"), ("fps", "FPS"), ("max_memory_mb", "MB")):
        ours = table[f"estimated_{figure}_vs_ref"].map("{:.2f}".format)
        paper = table[f"paper_{figure}_vs_ref"].map(lambda v: "" if math.isnan(v) else f"{v:.2f}")
        out[f"{name} ÷ ref: ours / paper"] = [
            f"{o} / {p}" if p else o for o, p in zip(ours, paper, strict=True)
        ]
    return out.reset_index()
