"""Accuracy per byte: every method at the same replication factor (docs/per_byte.md).

For each embedded digits model, ND = 4 and replication target R, RobustDiCE's thresholds are
found by bisection (`match_replication`), and every other method spends the same number of
neuron copies:

- ``robustdice``: Algorithm 1 (s1+s2+s3, dendrogram clustering) at the matched thresholds;
- ``robustdice-greedy``: the same with the paper's greedy clustering (matched on its own);
- ``random-clustering``: RobustDiCE's cluster sizes with random members (mean of seeds);
- ``random-copies``: LOP + RobustDiCE's per-unit number of extra copies on random neurons
  and devices (mean of seeds);
- ``budgeted``: the top neurons get 2 copies, the budget shared model-wide by raw s3;
- ``budgeted-c3``: the same with 3 copies (for k = 2);
- ``budgeted-uniform`` and ``budgeted-rd-budget`` (ablations): 2 copies, the same fraction in
  every unit / RobustDiCE's per-unit number of copies on the most important neurons.

Reported per (model, R, method): the achieved replication factor and the worst and mean
Top-1 over the failure sets with k = 1 and k = 2 failed devices (500 test images).

    python -m benchmarks.bench_per_byte [--quick] [--seeds 5] [--targets 1.1,1.25]
        [--models a,b]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rich.table import Table

from benchmarks._common import BenchResult, code_state, console, make_table, quick_parser, report
from dse import Workbench, open_workbench
from dse._compare import MethodResult, compare_methods
from robustdice_core.failures import FailureAccuracy, failure_sets
from robustdice_core.partition import Budgeted, Partition

NAME = "per_byte"
MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
TARGETS = (1.1, 1.25, 1.5, 1.75, 2.0)
DEVICES = 4
FAILURES = (0, 1, 2)
CONTROLS = ("random-clustering", "random-copies")
METHODS = (
    "robustdice",
    "robustdice-greedy",
    *CONTROLS,
    "budgeted",
    "budgeted-c3",
    "budgeted-uniform",
    "budgeted-rd-budget",
)


def _row(
    model: str,
    target: float,
    method: str,
    accuracies: Sequence[FailureAccuracy],
    partitions: Sequence[Partition],
) -> dict[str, Any]:
    """One measurement: per k, the mean over seeds of each seed's worst and mean Top-1 (%)."""
    row: dict[str, Any] = {
        "model": model,
        "target": target,
        "method": method,
        "replication_factor": float(np.mean([p.replication_factor for p in partitions])),
        "seeds": len(partitions),
        "options": dict(partitions[0].options),
    }
    for k in FAILURES:
        stats = [a.by_size(k) for a in accuracies]
        row[f"k{k}_worst"] = 100 * float(np.mean([s.worst for s in stats]))
        row[f"k{k}_mean"] = 100 * float(np.mean([s.mean for s in stats]))
    return row


def _from_result(model: str, target: float, method: str, result: MethodResult) -> dict[str, Any]:
    return _row(model, target, method, result.accuracies, result.partitions)


def _ablations(bench: Workbench, reference: Partition, target: float) -> dict[str, Partition]:
    """Budgeted with 2 copies and other allocations over units (same total copies)."""
    points = bench.scores.points(bench.score_names)
    budgeted = Budgeted(points)
    extra = [
        sum(len(n) for n in unit) - size
        for unit, size in zip(reference.assignments, reference.unit_sizes, strict=True)
    ]
    fractions = [min(1.0, e / size) for e, size in zip(extra, reference.unit_sizes, strict=True)]
    return {
        "budgeted-uniform": budgeted.for_replication(target, DEVICES),
        "budgeted-rd-budget": budgeted.partition_for(fractions, DEVICES),
    }


def _cell(bench: Workbench, model: str, target: float, seeds: int) -> list[dict[str, Any]]:
    """Every method at one replication target on one model."""
    common: dict[str, Any] = {"replication": target, "failures": FAILURES, "seeds": seeds}
    main = compare_methods(bench, DEVICES, methods=("robustdice", *CONTROLS, "budgeted"), **common)
    (greedy,) = compare_methods(
        bench, DEVICES, methods=("robustdice",), clustering="greedy", **common
    )
    (three,) = compare_methods(bench, DEVICES, methods=("budgeted",), copies=3, **common)
    rows = [_from_result(model, target, r.name, r) for r in main]
    rows.append(_from_result(model, target, "robustdice-greedy", greedy))
    rows.append(_from_result(model, target, "budgeted-c3", three))
    evaluator = bench.require_evaluator()
    sets = failure_sets(DEVICES, FAILURES)
    for name, partition in _ablations(bench, main[0].partition, target).items():
        rows.append(_row(model, target, name, [evaluator.evaluate(partition, sets)], [partition]))
    return sorted(rows, key=lambda r: METHODS.index(r["method"]))


def _summary(rows: list[dict[str, Any]], models: Sequence[str]) -> dict[str, Any]:
    """Per model and method the means over targets; where RobustDiCE wins, by how much."""
    summary: dict[str, Any] = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        means = {
            method: {
                key: float(np.mean([r[key] for r in mine if r["method"] == method]))
                for key in ("k1_worst", "k1_mean", "k2_worst", "k2_mean")
            }
            for method in METHODS
        }
        summary[model] = {"mean_over_targets": means, "robustdice_wins": _wins(mine)}
    return summary


def _wins(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per other method, the targets and metrics where RobustDiCE is strictly better."""
    wins: dict[str, list[dict[str, Any]]] = {}
    targets = sorted({r["target"] for r in rows})
    for method in METHODS[1:]:
        found = []
        for target in targets:
            at = {r["method"]: r for r in rows if r["target"] == target}
            for key in ("k1_worst", "k1_mean", "k2_worst", "k2_mean"):
                margin = at["robustdice"][key] - at[method][key]
                if margin > 0:
                    found.append({"target": target, "metric": key, "margin": margin})
        wins[method] = found
    return wins


def run(
    *,
    quick: bool = False,
    seeds: int = 5,
    targets: Sequence[float] = TARGETS,
    models: Sequence[str] = MODELS,
) -> BenchResult:
    if quick:
        models, targets, seeds = models[:1], targets[:2], min(seeds, 2)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for model in models:
        console.print(f"[bold]{model}[/]: loading model, data and scores")
        bench = open_workbench(model)
        for target in targets:
            start = time.perf_counter()
            rows.extend(_cell(bench, model, target, seeds))
            console.print(f"  R = {target:g}: {time.perf_counter() - start:.1f} s")
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "models": list(models),
            "targets": list(targets),
            "devices": DEVICES,
            "failures": list(FAILURES),
            "seeds": seeds,
            "scores": ["s1", "s2", "s3"],
            "test_images": 500,
            "code": code_state(),
        },
        rows=rows,
        summary=_summary(rows, models),
        notes=[
            f"total {time.perf_counter() - started:.0f} s",
            "worst/mean: Top-1 % over all failure sets of k devices; seeded controls: mean "
            "over seeds of each seed's worst/mean",
        ],
    )


def table(result: BenchResult) -> Table:
    rows = [
        [
            r["model"],
            r["target"],
            r["method"],
            f"{r['replication_factor']:.3f}",
            f"{r['k1_worst']:.1f} / {r['k1_mean']:.1f}",
            f"{r['k2_worst']:.1f} / {r['k2_mean']:.1f}",
        ]
        for r in result.rows
    ]
    columns = ("model", "R", "method", "achieved RF", "k=1 worst / mean", "k=2 worst / mean")
    return make_table("Top-1 % at matched replication (ND = 4)", columns, rows)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def main() -> None:
    parser = quick_parser(__doc__ or "")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per random control")
    parser.add_argument("--targets", type=_floats, default=TARGETS, help="e.g. 1.1,1.5")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(
        quick=args.quick,
        seeds=args.seeds,
        targets=args.targets,
        models=[m for m in args.models.split(",") if m],
    )
    report(result, table(result))


if __name__ == "__main__":
    main()
