"""Table 1: importance-score ablation at equal replication factor, over training seeds.

For every (model, training seed), every score subset and every replication target R:
RobustDiCE on that subset is matched to R (`dse.compare_methods(replication=R)`), and the
budgeted allocator spends the same copies from the same scores; the equal-cost controls
(random clustering, LOP + random copies) do so on the spec's control subset (s1+s2+s3).
Top-1 is taken over every failure set of ``failed`` devices (worst and mean); the table
gives, per cell, the mean over training seeds, the sample standard deviation and the range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dse import MethodResult, compare_methods
from studies._bench import open_run, with_scores
from studies._kinds import Progress
from studies._paper import PAPER_TABLE1, paper_model
from studies._plan import ModelRun
from studies._result import TIE_POINTS, Finding, ModelSource, StudyData, Tally, Verdict
from studies._spec import AblationSpec, subset_label

__all__ = ["aggregate_seeds", "compute_table1", "table1_findings"]

ALL_SCORES = "s1+s2+s3"
KEYS = ["model", "replication_target", "scores", "method", "label"]


def compute_table1(spec: AblationSpec, runs: Sequence[ModelRun], progress: Progress) -> StudyData:
    needed = sorted({score for subset in spec.score_subsets for score in subset})
    rows: list[dict[str, Any]] = []
    sources = []
    for run in runs:
        progress(f"{run.name}: loading the model, its data and scores {'+'.join(needed)}")
        bench = open_run(run, spec, needed)
        sources.append(ModelSource.of(bench))
        for subset in spec.score_subsets:
            view = with_scores(bench, subset)
            for target in spec.replication_targets:
                results = compare_methods(
                    view,
                    spec.num_devices,
                    methods=_methods(spec, subset),
                    replication=target,
                    seeds=spec.control_seeds,
                    copies=spec.copies,
                    clustering=spec.clustering,
                    failures=(0, spec.failed),
                )
                rows += [_row(run, subset, target, r, spec.failed) for r in results]
        progress(f"{run.name}: {len(spec.score_subsets)} score subsets evaluated")
    details = pd.DataFrame(rows)
    table = _with_paper(aggregate_seeds(details))
    test_images = sources[0].test_images
    return StudyData(
        table=table,
        details=details,
        findings=tuple(table1_findings(details, spec)),
        provenance=(
            f"Top-1: measured by running each model with the failed devices' neurons zeroed "
            f"(failure simulation) on {test_images} test images, every set of {spec.failed} "
            f"failed device(s) of {spec.num_devices}; not on the runtime.",
            "Replication factor: matched to each target by bisection on a global threshold "
            "scale; every method spends the same number of neuron copies (docs/per_byte.md).",
            f"Spread: mean, sample standard deviation and range over {len(spec.seeds)} "
            "training seed(s) per model; random controls are the mean over "
            f"{spec.control_seeds} placement seeds.",
            "Paper: Top-1 on ImageNet-1K of the torchvision model of the same family, at the "
            "paper's (unpublished) thresholds, not at equal replication; compare orderings, "
            "not values.",
        ),
        sources=tuple(sources),
    )


def _methods(spec: AblationSpec, subset: tuple[str, ...]) -> tuple[str, ...]:
    controls = spec.controls if set(subset) == set(spec.control_scores) else ()
    return (*spec.methods, *(c for c in controls if c not in spec.methods))


def _row(
    run: ModelRun, subset: tuple[str, ...], target: float, result: MethodResult, failed: int
) -> dict[str, Any]:
    stats = result.accuracy.by_size(failed)
    return {
        "model": run.model,
        "seed": run.seed,
        "replication_target": target,
        "scores": subset_label(subset),
        "method": result.name,
        "label": result.label,
        "replication_factor": result.replication_factor,
        "top1_no_failure_pct": 100 * result.accuracy.by_size(0).mean,
        "top1_worst_pct": 100 * stats.worst,
        "top1_mean_pct": 100 * stats.mean,
    }


def aggregate_seeds(details: pd.DataFrame) -> pd.DataFrame:
    """Per (model, target, scores, method): mean, sample std (n-1; empty for one seed),
    min and max over training seeds of the worst and mean Top-1 %."""
    grouped = details.groupby(KEYS, sort=False)
    table = grouped.agg(
        seeds=("seed", "count"),
        replication_factor=("replication_factor", "mean"),
        top1_no_failure_pct=("top1_no_failure_pct", "mean"),
        top1_worst_pct=("top1_worst_pct", "mean"),
        top1_worst_std=("top1_worst_pct", "std"),
        top1_worst_min=("top1_worst_pct", "min"),
        top1_worst_max=("top1_worst_pct", "max"),
        top1_mean_pct=("top1_mean_pct", "mean"),
        top1_mean_std=("top1_mean_pct", "std"),
    )
    return table.reset_index()


def _with_paper(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Top-1 beside RobustDiCE's rows (its model of the same family)."""
    table = table.copy()
    table["paper_model"] = [paper_model(m) or "" for m in table["model"]]
    table["paper_top1_pct"] = [
        PAPER_TABLE1.get(pm, {}).get(scores, np.nan) if method == "robustdice" else np.nan
        for pm, scores, method in zip(
            table["paper_model"], table["scores"], table["method"], strict=True
        )
    ]
    return table


def table1_findings(details: pd.DataFrame, spec: AblationSpec) -> list[Finding]:
    """The paper's Table 1 trends, checked on RobustDiCE per model and target, plus what
    the equal-cost comparison shows."""
    ours = details[details["method"] == "robustdice"]
    findings = [_all_three_best(ours), _stable_over_seeds(ours), _pairs_beat_singles(ours)]
    if details["method"].nunique() > 1:
        findings.append(_equal_cost(details))
    return [f for f in findings if f is not None]


def _cells(frame: pd.DataFrame) -> list[tuple[str, float, pd.DataFrame]]:
    return [
        (str(model), float(target), cell)
        for (model, target), cell in frame.groupby(["model", "replication_target"], sort=False)
    ]


def _all_three_best(ours: pd.DataFrame) -> Finding | None:
    parts, gaps = [], []
    for model, target, cell in _cells(ours):
        by_subset = cell.groupby("scores", sort=False)[["top1_worst_pct", "top1_mean_pct"]].mean()
        if ALL_SCORES not in by_subset.index or len(by_subset) < 2:
            continue
        worst, mean = by_subset["top1_worst_pct"], by_subset["top1_mean_pct"]
        others = worst.drop(ALL_SCORES)
        gaps.append(float(worst[ALL_SCORES] - others.max()))
        parts.append(
            f"{model} R={target:g}: rank {_rank(worst)} of {len(worst)} in the worst case "
            f"({worst[ALL_SCORES]:.1f} %, best {worst.idxmax()} {worst.max():.1f} %), rank "
            f"{_rank(mean)} in the mean ({mean[ALL_SCORES]:.1f} %, best {mean.idxmax()} "
            f"{mean.max():.1f} %)"
        )
    if not gaps:
        return None
    tally = Tally.of(gaps, [0.0] * len(gaps), TIE_POINTS)
    return Finding(
        "s1+s2+s3 preserves Top-1 under one failure best, for every model.",
        "s1+s2+s3, mean over training seeds: " + "; ".join(parts) + f". Against the best "
        f"other subset's worst case: {tally.describe()} (ties: within {TIE_POINTS:g} point).",
        tally.verdict,
    )


def _rank(values: pd.Series) -> int:
    return int((values > values[ALL_SCORES]).sum()) + 1


def _stable_over_seeds(ours: pd.DataFrame) -> Finding | None:
    parts = []
    for model, target, cell in _cells(ours):
        if cell["seed"].nunique() < 2:
            continue
        winners = []
        for seed, by_seed in cell.groupby("seed", sort=True):
            top = by_seed.loc[by_seed["top1_worst_pct"].idxmax()]
            winners.append(f"seed {seed}: {top['scores']}")
        parts.append(f"{model} R={target:g}: " + ", ".join(winners))
    if not parts:
        return None
    return Finding(
        "(one training per model; the paper reports no spread)",
        "best subset per training seed: " + "; ".join(parts) + ".",
        Verdict.OURS_ONLY,
    )


def _pairs_beat_singles(ours: pd.DataFrame) -> Finding | None:
    parts, pairs, singles = [], [], []
    for model, target, cell in _cells(ours):
        size = cell["scores"].str.count(r"\+") + 1
        one = cell[size == 1]["top1_worst_pct"].mean()
        two = cell[size == 2]["top1_worst_pct"].mean()
        if np.isnan(one) or np.isnan(two):
            continue
        singles.append(float(one))
        pairs.append(float(two))
        parts.append(f"{model} R={target:g}: {two - one:+.1f} points")
    if not parts:
        return None
    tally = Tally.of(pairs, singles, TIE_POINTS)
    return Finding(
        "Two scores beat one (paper: +7.8 AlexNet, +9.7 VGG16-BN, +0.2 ConvNeXt-Tiny points, "
        "mean of pairs minus mean of singles).",
        "mean of pairs minus mean of singles, worst case: "
        + "; ".join(parts)
        + f" ({tally.describe()}).",
        tally.verdict,
    )


def _equal_cost(details: pd.DataFrame) -> Finding | None:
    frame = details[details["scores"] == ALL_SCORES]
    keys = ["model", "replication_target", "label"]
    means = frame.groupby(keys, sort=False)["top1_worst_pct"].mean()
    parts = []
    for (model, target), cell in means.groupby(level=[0, 1], sort=False):
        ranked = cell.droplevel([0, 1]).sort_values(ascending=False)
        listing = ", ".join(f"{label} {value:.1f}" for label, value in ranked.items())
        parts.append(f"{model} R={target:g}: {listing}")
    if not parts:
        return None
    return Finding(
        "(the paper compares no methods at equal memory)",
        "worst-case Top-1 % at equal replication with s1+s2+s3, mean over seeds: "
        + "; ".join(parts)
        + ".",
        Verdict.OURS_ONLY,
    )
