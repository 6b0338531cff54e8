"""Sampler comparison for `dse optimize`: hypervolume vs trials, same reference box, seeds.

Every sampler of the registry runs the same problem (the embedded default: digits-vgg-bn,
ND = 4, objectives acc,mem,energy, worst-case 1-failure accuracy) from the same prepared
scores and evaluation data, in an in-memory study. The reference box (ideal and reference
point for the hypervolume) comes from the baselines and is the same for every run. The
default sampler of `dse optimize` is the one with the best mean hypervolume at the budget.

    python -m benchmarks.bench_samplers [--quick] [--trials 200] [--seeds 3] [--samplers a,b]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks._common import BenchResult, console, make_table, quick_parser, report
from dse import (
    SAMPLERS,
    RobustnessProblem,
    StudySettings,
    hypervolume,
    is_feasible,
    prepare_study,
    run_study,
)

CHECKPOINTS = (25, 50, 100, 150, 200, 300)


def _hv_curve(result: Any, checkpoints: list[int]) -> list[float]:
    """Hypervolume of the feasible completed trials among the first n, for each n."""
    trials = sorted(result.study.trials, key=lambda t: t.number)
    values = [t.values if t.state.name == "COMPLETE" and is_feasible(t) else None for t in trials]
    curve = []
    for n in checkpoints:
        done = np.array([v for v in values[:n] if v is not None])
        curve.append(hypervolume(done, result.box) if done.size else 0.0)
    return curve


def run(trials: int, seeds: int, samplers: list[str], test_size: int | None) -> BenchResult:
    base = StudySettings(model="digits-vgg-bn", test_size=test_size)
    problem = RobustnessProblem(base)  # scores, data and cost tables shared by every run
    checkpoints = [c for c in CHECKPOINTS if c <= trials] or [trials]
    rows: list[dict[str, Any]] = []
    for name in samplers:
        for seed in range(seeds):
            settings = StudySettings(
                model=base.model, test_size=test_size, sampler=name, seed=seed
            )
            prepared = prepare_study(
                settings,
                storage_url=":memory:",
                study_name=f"{name}-{seed}",
                problem=problem.for_settings(settings),
            )
            start = time.perf_counter()
            result = run_study(prepared, trials=trials)
            wall = time.perf_counter() - start
            evaluation_s = sum(
                sum(t.user_attrs.get("seconds", {}).values()) for t in result.study.trials
            )
            curve = _hv_curve(result, checkpoints)
            rows.append(
                {
                    "sampler": name,
                    "seed": seed,
                    "trials": trials,
                    "hypervolume": dict(zip(map(str, checkpoints), curve, strict=True)),
                    "front_size": len(result.front),
                    "wall_s": wall,
                    "sampler_overhead_s_per_trial": max(0.0, wall - evaluation_s) / trials,
                }
            )
            console.print(f"{name} seed {seed}: HV {curve[-1]:.4f} in {wall:.0f} s")
    summary = _summary(rows, checkpoints)
    best = max(summary, key=lambda s: summary[s]["mean"][-1])
    return BenchResult(
        name="samplers",
        settings={
            "model": base.model,
            "objectives": list(base.objectives),
            "acc_metric": base.acc_metric,
            "failures": list(base.failures),
            "test_size": test_size,
            "trials": trials,
            "seeds": seeds,
            "checkpoints": checkpoints,
            "reference": "baselines: ideal = best, reference = 1.1 x worst (min) or 0 (max)",
        },
        rows=rows,
        summary={"by_sampler": summary, "best_at_budget": best},
        notes=[f"best mean hypervolume at {checkpoints[-1]} trials: {best}"],
    )


def _summary(rows: list[dict[str, Any]], checkpoints: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["sampler"] for r in rows):
        curves = np.array(
            [[r["hypervolume"][str(c)] for c in checkpoints] for r in rows if r["sampler"] == name]
        )
        overhead = [r["sampler_overhead_s_per_trial"] for r in rows if r["sampler"] == name]
        out[name] = {
            "mean": curves.mean(axis=0).tolist(),
            "std": curves.std(axis=0).tolist(),
            "overhead_ms_per_trial": 1e3 * float(np.mean(overhead)),
        }
    return out


def main() -> None:
    parser = quick_parser(__doc__ or "")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samplers", default=",".join(SAMPLERS.names()))
    parser.add_argument("--test-size", type=int, default=None)
    args = parser.parse_args()
    trials, seeds = (20, 1) if args.quick else (args.trials, args.seeds)
    samplers = ["random", "nsga2"] if args.quick else args.samplers.split(",")
    result = run(trials, seeds, samplers, args.test_size)
    checkpoints = result.settings["checkpoints"]
    table_rows = [
        [
            name,
            *(f"{m:.4f} ± {s:.4f}" for m, s in zip(info["mean"], info["std"], strict=True)),
            f"{info['overhead_ms_per_trial']:.1f}",
        ]
        for name, info in result.summary["by_sampler"].items()
    ]
    table = make_table(
        f"Hypervolume (mean ± std over {seeds} seeds) vs trials",
        ["sampler", *(f"{c} trials" for c in checkpoints), "sampler ms/trial"],
        table_rows,
    )
    report(result, table)


if __name__ == "__main__":
    main()
