"""Partitioning time per threshold vector: paper greedy vs dendrogram clustering (DESIGN 3.3).

Scores are "precomputed": s1 (weight magnitude, exact) plus two seeded uniform random columns,
min-max normalised per unit, for every unit of torchvision VGG16-BN and ConvNeXt-Tiny with
random weights. Reports the one-time prepare cost (constructing `RobustDiCE`) and the time of
`partition_for(thresholds, 4)` per threshold vector, median of repeats, with a breakdown of the
fast variant into clustering cut, dealing and `Partition` construction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torchvision
from rich.table import Table

from benchmarks._common import BenchResult, make_table, measure, ms, quick_parser, report
from robustdice_core.importance import ImportanceScores, MagnitudeScorer
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import (
    Clustering,
    DendrogramClustering,
    GreedyClustering,
    Partition,
    RobustDiCE,
    deal_clusters,
)
from robustdice_core.units import trace_model
from robustdice_core.zoo import LabelledImages

NAME = "partition"
NUM_DEVICES = 4
INPUT_SHAPE = (3, 224, 224)
SCORE_NAMES = ("s1", "random_a", "random_b")
TARGET_MS = 50.0
Thresholds = float | list[float]


def model_points(model_name: str, seed: int = 0) -> list[np.ndarray]:
    """Per unit ``[n_i, 3]`` normalised points: s1 and two seeded random score columns."""
    model = torchvision.models.get_model(model_name, weights=None)
    net = MaskedNetwork(trace_model(model, INPUT_SHAPE))
    no_data = LabelledImages(torch.zeros(0, *INPUT_SHAPE), torch.zeros(0, dtype=torch.int64))
    s1 = MagnitudeScorer().score(net, no_data)
    rng = np.random.default_rng(seed)
    raw = {
        "s1": tuple(s1),
        "random_a": tuple(rng.random(s.size) for s in s1),
        "random_b": tuple(rng.random(s.size) for s in s1),
    }
    return ImportanceScores(raw).points(SCORE_NAMES)


def threshold_vectors(num_units: int, quick: bool, seed: int = 1) -> dict[str, Thresholds]:
    rng = np.random.default_rng(seed)
    random = rng.uniform(0.0, 0.6, size=num_units).tolist()
    if quick:
        return {"uniform 0.2": 0.2, "random U(0,0.6)": random}
    return {
        "uniform 0.05": 0.05,
        "uniform 0.2": 0.2,
        "uniform 0.5": 0.5,
        "random U(0,0.6)": random,
    }


def cluster_count(points: Sequence[np.ndarray], thresholds: Thresholds) -> int:
    """Clusters over all units (dendrogram cut), to show how fine the vector is."""
    values = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(points),))
    units = [DendrogramClustering().prepare(p) for p in points]
    return int(sum(u.labels(float(t)).max() + 1 for u, t in zip(units, values, strict=True)))


def time_variant(
    points: Sequence[np.ndarray],
    clustering: Clustering,
    vectors: dict[str, Thresholds],
    *,
    repeats: int,
    budget_s: float | None,
) -> dict[str, Any]:
    """Prepare cost and per-vector `partition_for` time of one clustering strategy."""
    prepare = measure(
        lambda: RobustDiCE(points, clustering=clustering),
        repeats=3 if budget_s is None else 1,
        warmup=0,
    )
    partitioner = RobustDiCE(points, clustering=clustering)
    per_vector = {}
    for label, thresholds in vectors.items():
        timing = measure(
            partial(partitioner.partition_for, thresholds, NUM_DEVICES),
            repeats=repeats,
            warmup=1 if budget_s is None else 0,
            budget_s=budget_s,
        )
        partition = partitioner.partition_for(thresholds, NUM_DEVICES)
        per_vector[label] = {
            **timing.to_dict(),
            "replication_factor": partition.replication_factor,
        }
    return {"prepare": prepare.to_dict(), "vectors": per_vector}


def fast_breakdown(points: Sequence[np.ndarray], thresholds: Thresholds) -> dict[str, float]:
    """Seconds spent in the dendrogram cut, in dealing, and in building the `Partition`."""
    units = [DendrogramClustering().prepare(p) for p in points]
    importance = [np.asarray(p).sum(axis=1) for p in points]
    values = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(points),))
    t0 = time.perf_counter()
    labels = [u.labels(float(t)) for u, t in zip(units, values, strict=True)]
    t1 = time.perf_counter()
    per_device = [
        deal_clusters(lab, imp, NUM_DEVICES) for lab, imp in zip(labels, importance, strict=True)
    ]
    t2 = time.perf_counter()
    Partition.from_arrays("robustdice", [u.size for u in units], per_device)
    t3 = time.perf_counter()
    return {"cut_s": t1 - t0, "deal_s": t2 - t1, "partition_s": t3 - t2}


def bench_model(model_name: str, quick: bool) -> list[dict[str, Any]]:
    points = model_points(model_name)
    vectors = threshold_vectors(len(points), quick)
    fast = time_variant(
        points, DendrogramClustering(), vectors, repeats=3 if quick else 15, budget_s=None
    )
    greedy = time_variant(
        points, GreedyClustering(), vectors, repeats=1 if quick else 3, budget_s=30.0
    )
    rows = []
    for label, thresholds in vectors.items():
        f, g = fast["vectors"][label], greedy["vectors"][label]
        rows.append(
            {
                "model": model_name,
                "units": len(points),
                "neurons": int(sum(p.shape[0] for p in points)),
                "vector": label,
                "clusters": cluster_count(points, thresholds),
                "fast": f,
                "greedy": g,
                "speedup_greedy_over_fast": g["median_s"] / f["median_s"],
                "fast_breakdown": fast_breakdown(points, thresholds),
                "fast_prepare": fast["prepare"],
                "greedy_prepare": greedy["prepare"],
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        worst_fast_ms = max(ms(r["fast"]["median_s"]) for r in mine)
        summary[model] = {
            "fast_prepare_s": mine[0]["fast_prepare"]["median_s"],
            "greedy_prepare_s": mine[0]["greedy_prepare"]["median_s"],
            "fast_worst_median_ms": worst_fast_ms,
            "greedy_worst_median_ms": max(ms(r["greedy"]["median_s"]) for r in mine),
            "speedup_min": min(r["speedup_greedy_over_fast"] for r in mine),
            "speedup_max": max(r["speedup_greedy_over_fast"] for r in mine),
            "target_ms": TARGET_MS,
            "target_met": worst_fast_ms < TARGET_MS,
        }
    return summary


def run(quick: bool = False) -> BenchResult:
    models = ("vgg16_bn",) if quick else ("vgg16_bn", "convnext_tiny")
    rows = [row for model in models for row in bench_model(model, quick)]
    return BenchResult(
        name=NAME,
        settings={
            "models": list(models),
            "num_devices": NUM_DEVICES,
            "scores": list(SCORE_NAMES),
            "quick": quick,
            "timed_call": "RobustDiCE.partition_for(thresholds, 4)",
        },
        rows=rows,
        summary=summarise(rows),
        notes=[
            "fast = DendrogramClustering (default), greedy = GreedyClustering (paper).",
            f"target: fast variant < {TARGET_MS:.0f} ms per threshold vector per model.",
        ],
    )


def table(result: BenchResult) -> Table:
    rows = []
    for model, s in result.summary.items():
        rows.append(
            [model, "prepare (once)", s["greedy_prepare_s"] * 1e3, s["fast_prepare_s"] * 1e3]
            + ["", "", "", ""]
        )
    for r in result.rows:
        b = r["fast_breakdown"]
        rows.append(
            [
                r["model"],
                r["vector"],
                ms(r["greedy"]["median_s"]),
                ms(r["fast"]["median_s"]),
                r["speedup_greedy_over_fast"],
                f"{r['fast']['replication_factor']:.2f}/{r['greedy']['replication_factor']:.2f}",
                r["clusters"],
                f"{ms(b['cut_s']):.1f}/{ms(b['deal_s']):.1f}/{ms(b['partition_s']):.1f}",
            ]
        )
    columns = [
        "model",
        "thresholds",
        "greedy ms",
        "fast ms",
        "greedy/fast",
        "repl fast/greedy",
        "clusters",
        "fast cut/deal/Partition ms",
    ]
    return make_table("Partitioning per threshold vector (ND=4, median)", columns, rows)


def main(argv: Sequence[str] | None = None) -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    result = run(quick=args.quick)
    report(result, table(result))


if __name__ == "__main__":
    main()
