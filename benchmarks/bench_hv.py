"""Hypervolume per search method: `dse optimize --objectives acc,mem --acc-metric expected`.

For each embedded model (the default first) the same study runs with `--method robustdice`,
robustdice with `--threshold-scale quantile`, `budgeted`, `graded` and `both`, with the same
sampler, seed, trial budget, test images and evaluation data, for each sampler seed. The
studies of a model share their reference box (ideal and reference point from the baselines
LOP, CDC and full replication, `dse._optimize.reference_box`: the baselines do not depend on
the method) and its normalisation; the hypervolume is pymoo's exact `HV` in that box
(`dse.hypervolume`).

Before the studies, the threshold scales are compared directly: per unit, the replication
(neuron copies / neurons) of RobustDiCE partitions at uniformly drawn parameters on the
`linear` and the `quantile` scale.

    python -m benchmarks.bench_hv [--quick] [--trials 40] [--models a,b] [--test-size 300]
                                  [--seeds 0,1] [--variants robustdice,graded]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.table import Table

from benchmarks._common import BenchResult, console, make_table, quick_parser, report
from dse import (
    RobustnessProblem,
    StudySettings,
    hypervolume,
    is_feasible,
    prepare_study,
    run_study,
)
from dse._objectives import AccuracyMetric
from dse._pareto import ReferenceBox

NAME = "hv"
MODELS = ("digits-vgg-bn", "digits-alexnet", "digits-convnext")  # the default first
VARIANTS: dict[str, dict[str, str]] = {  # label -> the `StudySettings` it changes
    "robustdice": {"method": "robustdice"},
    "robustdice quantile": {"method": "robustdice", "threshold_scale": "quantile"},
    "budgeted": {"method": "budgeted"},
    "graded": {"method": "graded"},
    "both": {"method": "both"},
}
SCALE_DRAWS = 200  # uniform parameter vectors per scale for the replication table
LARGE = 1.05  # a unit counts as replicated above this replication


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    trials: int
    test_size: int
    sampler: str
    seeds: tuple[int, ...] = (0,)
    variants: tuple[str, ...] = tuple(VARIANTS)


FULL = Plan(MODELS, trials=40, test_size=300, sampler="gp", seeds=(0, 1))
QUICK = Plan(MODELS[:1], trials=8, test_size=100, sampler="random")


def scale_rows(problem: RobustnessProblem, draws: int) -> list[dict[str, Any]]:
    """Per unit: mean replication and share of draws above `LARGE`, per threshold scale."""
    units = problem.bench.net.units
    rng = np.random.default_rng(0)
    replication: dict[str, np.ndarray] = {}
    for scale in ("linear", "quantile"):
        settings = problem.settings.replace(threshold_scale=scale)
        scaled = RobustnessProblem(settings, bench=problem.bench)
        space = scaled.space
        low, high = np.array(space.low), np.array(space.high)
        replication[scale] = np.array(
            [
                scaled.partitioner.partition_for(
                    space.thresholds(low + rng.random(len(low)) * (high - low)),
                    problem.settings.devices,
                ).unit_replication
                for _ in range(draws)
            ]
        )
    return [
        {
            "model": problem.settings.model,
            "unit": unit.index,
            "layer": unit.name,
            "neurons": unit.num_neurons,
            **{
                f"{scale}_{stat}": float(fn(values[:, unit.index]))
                for scale, values in replication.items()
                for stat, fn in (
                    ("mean", np.mean),
                    ("p10", lambda v: np.quantile(v, 0.1)),
                    ("p90", lambda v: np.quantile(v, 0.9)),
                    ("replicated", lambda v: np.mean(v > LARGE)),
                )
            },
        }
        for unit in units
    ]


def study_rows(problem: RobustnessProblem, plan: Plan) -> list[dict[str, Any]]:
    """One study per variant on the same problem; HV of each front in one common box."""
    rows, box = [], None
    for label in plan.variants:
        settings = problem.settings.replace(**VARIANTS[label])
        variant = RobustnessProblem(settings, bench=problem.bench)
        prepared = prepare_study(settings, storage_url=":memory:", problem=variant)
        box = box or prepared.box
        if prepared.box != box:  # the baselines do not depend on the method
            raise RuntimeError(f"{label}: reference box {prepared.box} differs from {box}")
        start = time.perf_counter()
        result = run_study(prepared, trials=plan.trials)
        wall = time.perf_counter() - start
        done = [t for t in result.study.trials if is_feasible(t)]
        values = np.array([t.values for t in done])
        methods = [str(t.user_attrs.get("method")) for t in result.front]
        rows.append(
            {
                "model": settings.model,
                "seed": settings.seed,
                "variant": label,
                "method": settings.method,
                "threshold_scale": settings.threshold_scale,
                "trials": len(done),
                "hypervolume": hypervolume(values, box),
                "hv_half": hypervolume(values[: len(values) // 2], box),
                "front_size": len(result.front),
                "front_methods": {m: methods.count(m) for m in sorted(set(methods))},
                "trial_methods": _counts(str(t.user_attrs.get("method")) for t in done),
                "front": sorted(map(list, (t.values for t in result.front))),
                "box": box.to_dict(),
                "wall_s": wall,
            }
        )
        console.print(
            f"{settings.model} seed {settings.seed} {label}: HV "
            f"{rows[-1]['hypervolume']:.4f}, front {len(result.front)} "
            f"{rows[-1]['front_methods']}, {wall:.0f} s"
        )
    return rows


def tight_hypervolumes(rows: list[dict[str, Any]]) -> None:
    """Add ``hv_tight``: the HV with the acc reference at the lowest front accuracy of any of
    the model's variants instead of 0 (acc otherwise squashes every difference); the same
    box for every variant of a model and seed."""
    for model, seed in dict.fromkeys((r["model"], r["seed"]) for r in rows):
        mine = [r for r in rows if r["model"] == model and r["seed"] == seed]
        low = min(min(v[0] for v in r["front"]) for r in mine)
        stored = ReferenceBox.from_dict(mine[0]["box"])
        box = ReferenceBox(stored.ideal, (low, *stored.nadir[1:]), stored.maximize)
        for r in mine:
            r["hv_tight"] = hypervolume(np.array(r["front"]), box)
            r["acc_reference_tight"] = low


def _counts(names: Any) -> dict[str, int]:
    listed = list(names)
    return {m: listed.count(m) for m in sorted(set(listed))}


def run(quick: bool = False, plan: Plan | None = None) -> BenchResult:
    plan = plan or (QUICK if quick else FULL)
    studies: list[dict[str, Any]] = []
    scales: list[dict[str, Any]] = []
    for model in plan.models:
        settings = StudySettings(
            model=model,
            objectives=("acc", "mem"),
            acc_metric=AccuracyMetric.expected,
            test_size=plan.test_size,
            sampler=plan.sampler,
            seed=plan.seeds[0],
        )
        problem = RobustnessProblem(settings)
        scales += scale_rows(problem, SCALE_DRAWS)
        for seed in plan.seeds:
            seeded = problem.for_settings(settings.replace(seed=seed))
            studies += study_rows(seeded, plan)
    tight_hypervolumes(studies)
    hv = _summary(studies)
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "models": list(plan.models),
            "objectives": ["acc", "mem"],
            "acc_metric": "expected",
            "fail_prob": StudySettings().fail_prob,
            "devices": StudySettings().devices,
            "trials": plan.trials,
            "test_images": plan.test_size,
            "sampler": plan.sampler,
            "seeds": list(plan.seeds),
            "variants": list(plan.variants),
            "scale_draws": SCALE_DRAWS,
            "torch_threads": torch.get_num_threads(),
            "hv": "pymoo.indicators.hv.HV in the study's ReferenceBox (dse.hypervolume)",
        },
        rows=studies,
        summary={
            "scales": scales,
            "hv": hv,
            "target_met": _target_met(hv),
            "graded_wins": _wins(hv, "graded"),
        },
        notes=[
            "HV: exact 2-D hypervolume of the feasible trials in the box from the baselines "
            "(ideal: best baseline; reference: worst mem + 10 % of the spread, acc 0), the "
            "same box for every variant of a model.",
            "hv_half: the same after the first half of the trials.",
            "hv_tight: the same fronts with the acc reference at the lowest front accuracy of "
            "the model's variants (about LOP's) instead of 0.",
            "the first trials of a study are its enqueued extremes (2 per method).",
            "target (the issue's goal): on every model and seed some new search (robustdice "
            "quantile, budgeted, graded or both) reaches a higher HV than robustdice on the "
            "linear scale; graded_wins counts the (model, seed) pairs where graded does.",
        ],
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"<model> seed <s>": {variant: HV}}``."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        out.setdefault(f"{row['model']} seed {row['seed']}", {})[row["variant"]] = row[
            "hypervolume"
        ]
    return out


def _target_met(hv: dict[str, dict[str, float]]) -> bool | None:
    if not all("robustdice" in by and len(by) > 1 for by in hv.values()):
        return None
    return all(
        max(v for k, v in by.items() if k != "robustdice") > by["robustdice"] for by in hv.values()
    )


def _wins(hv: dict[str, dict[str, float]], variant: str) -> str | None:
    pairs = [by for by in hv.values() if variant in by and "robustdice" in by]
    if not pairs:
        return None
    return f"{sum(by[variant] > by['robustdice'] for by in pairs)} of {len(pairs)}"


def table(result: BenchResult) -> Table:
    rows = [
        [
            r["model"],
            r["seed"],
            r["variant"],
            f"{r['hypervolume']:.4f}",
            f"{r['hv_half']:.4f}",
            f"{r['hv_tight']:.4f}",
            r["front_size"],
            ", ".join(f"{k} {v}" for k, v in r["front_methods"].items()),
            f"{r['wall_s']:.0f}",
        ]
        for r in result.rows
    ]
    return make_table(
        f"Hypervolume, acc (expected) vs mem, {result.settings['trials']} trials, "
        f"{result.settings['sampler']}",
        ["model", "seed", "variant", "HV", "HV half", "HV tight", "front", "methods", "wall s"],
        rows,
    )


def scale_table(result: BenchResult) -> Table:
    rows = [
        [
            f"{r['model']} u{r['unit']}",
            r["neurons"],
            f"{r['linear_mean']:.2f} ({r['linear_p10']:.2f}-{r['linear_p90']:.2f})",
            f"{r['linear_replicated']:.2f}",
            f"{r['quantile_mean']:.2f} ({r['quantile_p10']:.2f}-{r['quantile_p90']:.2f})",
            f"{r['quantile_replicated']:.2f}",
        ]
        for r in result.summary["scales"]
    ]
    return make_table(
        f"Per-unit replication at {SCALE_DRAWS} uniform draws: mean (p10-p90), share > {LARGE}",
        ["unit", "neurons", "linear", "linear repl.", "quantile", "quantile repl."],
        rows,
    )


def main() -> None:
    parser = quick_parser(__doc__ or "")
    parser.add_argument("--trials", type=int, default=FULL.trials)
    parser.add_argument("--models", default=",".join(FULL.models))
    parser.add_argument("--test-size", type=int, default=FULL.test_size)
    parser.add_argument("--sampler", default=FULL.sampler)
    parser.add_argument("--seeds", default=",".join(map(str, FULL.seeds)))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    plan = (
        QUICK
        if args.quick
        else Plan(
            tuple(args.models.split(",")),
            args.trials,
            args.test_size,
            args.sampler,
            tuple(int(s) for s in args.seeds.split(",")),
            tuple(args.variants.split(",")),
        )
    )
    result = run(quick=args.quick, plan=plan)
    console.print(scale_table(result))
    report(result, table(result))


if __name__ == "__main__":
    main()
