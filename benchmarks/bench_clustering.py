"""Step-2 clustering for `dse optimize`: greedy (the paper's) vs dendrogram cut, by Pareto front.

Both clusterings guarantee the same cluster diameter bound but cut different clusters, so the
same threshold vector gives different partitions, replication and worst-case accuracy. This
runs one study per (model, clustering, seed) on the embedded digits models with the default
problem (ND = 4, objectives acc,mem,energy, worst-case Top-1 at one failure) and compares the
hypervolumes of the fronts in one reference box per model (from the baselines LOP, CDC and
full replication, which do not depend on the clustering; checked equal).

With the random sampler and the same seed both clusterings get identical threshold vectors
(the search space comes from the unit diameters, equal for both), so the comparison is paired:
per seed, HV(greedy) - HV(dendrogram), and per threshold vector the difference in accuracy and
replication factor. Optionally the default `gp` sampler on one model, where the two searches
diverge after the random start-up trials.

    python -m benchmarks.bench_clustering [--quick] [--trials 100] [--seeds 3]
        [--models a,b] [--gp-trials 60] [--gp-seeds 2] [--gp-model digits-vgg-bn]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optuna
import torch
from rich.table import Table

from benchmarks._common import BenchResult, code_state, console, make_table, quick_parser, report
from dse import (
    RobustnessProblem,
    StudySettings,
    hypervolume,
    is_feasible,
    prepare_study,
    run_study,
)

NAME = "clustering"
MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
CLUSTERINGS = ("dendrogram", "greedy")
CHECKPOINTS = (25, 50, 100, 150, 200, 300)
RF_LIMIT = 1.5  # "low replication": best worst-case accuracy at replication factor <= this


def _feasible(trial: Any) -> bool:
    return trial.state.name == "COMPLETE" and is_feasible(trial)


def _study_row(
    result: Any, box: Any, acc_index: int, checkpoints: list[int]
) -> tuple[dict[str, Any], list[Any]]:
    """Measurements of one finished study, all hypervolumes in the model's common ``box``."""
    trials = sorted(result.study.trials, key=lambda t: t.number)
    values = [np.asarray(t.values, dtype=float) if _feasible(t) else None for t in trials]
    curve = {}
    for n in checkpoints:
        done = [v for v in values[:n] if v is not None]
        curve[str(n)] = hypervolume(np.array(done), box) if done else 0.0
    feasible = [t for t in trials if _feasible(t)]
    front = result.front
    front_rf = np.array([t.user_attrs["replication_factor"] for t in front])
    low_rf = [
        t.values[acc_index] for t in feasible if t.user_attrs["replication_factor"] <= RF_LIMIT
    ]
    partition_s = np.array([t.user_attrs["seconds"]["partition"] for t in feasible])
    evaluate_s = np.array(
        [sum(v for k, v in t.user_attrs["seconds"].items() if k != "partition") for t in feasible]
    )
    row = {
        "hypervolume": curve,
        "hypervolume_own_box": result.hypervolume,
        "feasible": len(feasible),
        "front_size": len(front),
        "front_rf_mean": float(front_rf.mean()) if front_rf.size else None,
        "front_rf_min": float(front_rf.min()) if front_rf.size else None,
        "front_rf_max": float(front_rf.max()) if front_rf.size else None,
        "best_acc_rf_le_limit": max(low_rf) if low_rf else None,
        "partition_ms_median": 1e3 * float(np.median(partition_s)),
        "partition_ms_mean": 1e3 * float(partition_s.mean()),
        "evaluate_ms_median": 1e3 * float(np.median(evaluate_s)),
        # the front, for later analysis: objective values and replication factor
        "front": [
            {
                "number": t.number,
                "values": list(t.values),
                "rf": t.user_attrs["replication_factor"],
            }
            for t in front
        ],
    }
    return row, trials


def _paired_vectors(a: list[Any], b: list[Any], acc_index: int) -> dict[str, Any] | None:
    """Per threshold vector (same trial number): greedy minus dendrogram. ``None`` if the
    two studies did not sample the same vectors (then they are not paired)."""
    if len(a) != len(b):
        return None
    for ta, tb in zip(a, b, strict=True):
        if ta.params.keys() != tb.params.keys() or not np.allclose(
            [ta.params[k] for k in sorted(ta.params)], [tb.params[k] for k in sorted(tb.params)]
        ):
            return None
    both = [(ta, tb) for ta, tb in zip(a, b, strict=True) if _feasible(ta) and _feasible(tb)]
    acc = np.array([tb.values[acc_index] - ta.values[acc_index] for ta, tb in both])
    rf = np.array(
        [
            tb.user_attrs["replication_factor"] - ta.user_attrs["replication_factor"]
            for ta, tb in both
        ]
    )
    return {
        "vectors": len(both),
        "acc_diff_mean": float(acc.mean()),
        "acc_diff_min": float(acc.min()),
        "acc_diff_max": float(acc.max()),
        "greedy_more_acc": int((acc > 0).sum()),
        "dendrogram_more_acc": int((acc < 0).sum()),
        "rf_diff_mean": float(rf.mean()),
        "rf_diff_min": float(rf.min()),
        "rf_diff_max": float(rf.max()),
    }


def _run_model(
    model: str,
    sampler: str,
    trials: int,
    seeds: int,
    test_size: int | None,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    problems = {
        c: RobustnessProblem(StudySettings(model=model, clustering=c, test_size=test_size))
        for c in CLUSTERINGS
    }
    objective_names = [o.name for o in problems[CLUSTERINGS[0]].objectives]
    acc_index = objective_names.index("acc")
    checkpoints = sorted({c for c in CHECKPOINTS if c <= trials} | {trials})
    box = None
    boxes_equal = True
    paired: list[dict[str, Any] | None] = []
    for seed in range(seeds):
        seed_trials = {}
        for clustering in CLUSTERINGS:  # interleaved per seed: load drifts hit both alike
            settings = StudySettings(
                model=model, clustering=clustering, sampler=sampler, seed=seed, test_size=test_size
            )
            prepared = prepare_study(
                settings,
                storage_url=":memory:",
                study_name=f"{model}-{clustering}-{sampler}-{seed}",
                problem=problems[clustering].for_settings(settings),
            )
            start = time.perf_counter()
            result = run_study(prepared, trials=trials)
            wall = time.perf_counter() - start
            if box is None:
                box = result.box
            own_box_equal = bool(
                np.allclose(result.box.ideal, box.ideal)
                and np.allclose(result.box.nadir, box.nadir)
            )
            boxes_equal &= own_box_equal
            row, seed_trials[clustering] = _study_row(result, box, acc_index, checkpoints)
            rows.append(
                {
                    "model": model,
                    "sampler": sampler,
                    "clustering": clustering,
                    "seed": seed,
                    "trials": trials,
                    "box_equal": own_box_equal,
                    "wall_s": wall,
                    "wall_ms_per_trial": 1e3 * wall / trials,
                    **row,
                }
            )
            console.print(
                f"{model} {sampler} {clustering} seed {seed}: "
                f"HV {row['hypervolume'][str(trials)]:.4f}, front {row['front_size']}, "
                f"in {wall:.0f} s"
            )
        paired.append(_paired_vectors(seed_trials["dendrogram"], seed_trials["greedy"], acc_index))
    assert box is not None
    return {
        "box": box.to_dict(),
        "boxes_equal": boxes_equal,
        "objectives": objective_names,
        "checkpoints": checkpoints,
        "paired_vectors": paired,
    }


def _summarise(
    rows: list[dict[str, Any]], sampler: str, model: str, info: dict[str, Any]
) -> dict[str, Any]:
    mine = [r for r in rows if r["sampler"] == sampler and r["model"] == model]
    final = str(mine[0]["trials"])
    by: dict[str, Any] = {}
    hv = {}
    for c in CLUSTERINGS:
        rs = sorted((r for r in mine if r["clustering"] == c), key=lambda r: r["seed"])
        hv[c] = np.array([r["hypervolume"][final] for r in rs])
        low = [r["best_acc_rf_le_limit"] for r in rs if r["best_acc_rf_le_limit"] is not None]
        by[c] = {
            "hv_per_seed": hv[c].tolist(),
            "hv_mean": float(hv[c].mean()),
            "hv_std": float(hv[c].std()),
            "hv_curve_mean": {
                k: float(np.mean([r["hypervolume"][k] for r in rs])) for k in rs[0]["hypervolume"]
            },
            "front_size_mean": float(np.mean([r["front_size"] for r in rs])),
            "front_rf_mean": float(np.mean([r["front_rf_mean"] for r in rs])),
            "best_acc_rf_le_limit_mean": float(np.mean(low)) if low else None,
            "best_acc_rf_le_limit_max": max(low) if low else None,
            "partition_ms_median": float(np.median([r["partition_ms_median"] for r in rs])),
            "evaluate_ms_median": float(np.median([r["evaluate_ms_median"] for r in rs])),
            "wall_ms_per_trial": float(np.mean([r["wall_ms_per_trial"] for r in rs])),
        }
    diff = hv["greedy"] - hv["dendrogram"]
    vectors = [p for p in info["paired_vectors"] if p is not None]
    return {
        "by_clustering": by,
        "hv_diff_greedy_minus_dendrogram_per_seed": diff.tolist(),
        "hv_diff_mean": float(diff.mean()),
        "hv_diff_std": float(diff.std()),
        "wins": {
            "greedy": int((diff > 0).sum()),
            "dendrogram": int((diff < 0).sum()),
            "tie": int((diff == 0).sum()),
        },
        "paired_vectors": len(vectors) == len(info["paired_vectors"]),
        "paired_vectors_per_seed": info["paired_vectors"],
        "acc_diff_per_vector_mean": float(np.mean([p["acc_diff_mean"] for p in vectors]))
        if vectors
        else None,
        "acc_diff_per_vector_range": [
            min(p["acc_diff_min"] for p in vectors),
            max(p["acc_diff_max"] for p in vectors),
        ]
        if vectors
        else None,
        "rf_diff_per_vector_mean": float(np.mean([p["rf_diff_mean"] for p in vectors]))
        if vectors
        else None,
        "partition_greedy_over_dendrogram": by["greedy"]["partition_ms_median"]
        / by["dendrogram"]["partition_ms_median"],
        "boxes_equal": info["boxes_equal"],
        "box": info["box"],
    }


def run(
    quick: bool = False,
    *,
    trials: int = 100,
    seeds: int = 3,
    models: tuple[str, ...] = MODELS,
    gp_trials: int = 60,
    gp_seeds: int = 2,
    gp_model: str | None = "digits-vgg-bn",
    test_size: int | None = None,
) -> BenchResult:
    if quick:
        trials, seeds, models, gp_model = 20, 1, ("digits-vgg-bn",), None
    plan = [("random", m, trials, seeds) for m in models]
    if gp_model and gp_trials > 0 and gp_seeds > 0:
        plan.append(("gp", gp_model, gp_trials, gp_seeds))
    code = code_state()  # at the start: the code imported, not what is there at the end
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    start = time.perf_counter()
    for sampler, model, n, s in plan:
        info = _run_model(model, sampler, n, s, test_size, rows)
        summary.setdefault(sampler, {})[model] = _summarise(rows, sampler, model, info)
    total = time.perf_counter() - start
    notes = []
    for sampler, per_model in summary.items():
        for model, info in per_model.items():
            by = info["by_clustering"]
            better = "greedy" if info["hv_diff_mean"] > 0 else "dendrogram"
            notes.append(
                f"{sampler} {model}: HV greedy {by['greedy']['hv_mean']:.4f} vs dendrogram "
                f"{by['dendrogram']['hv_mean']:.4f} (diff {info['hv_diff_mean']:+.4f} "
                f"± {info['hv_diff_std']:.4f}, wins greedy {info['wins']['greedy']} / "
                f"dendrogram {info['wins']['dendrogram']}): {better} higher"
                + ("" if info["boxes_equal"] else "; boxes differed, HV in the first box")
            )
    notes.append(f"total wall time {total:.0f} s")
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "models": list(models),
            "clusterings": list(CLUSTERINGS),
            "objectives": list(StudySettings(model=models[0]).objectives),
            "acc_metric": StudySettings(model=models[0]).acc_metric,
            "failures": list(StudySettings(model=models[0]).failures),
            "devices": StudySettings(model=models[0]).devices,
            "test_size": test_size,
            "plan": [{"sampler": p, "model": m, "trials": n, "seeds": s} for p, m, n, s in plan],
            "rf_limit": RF_LIMIT,
            "torch_threads": torch.get_num_threads(),
            "reference": "one box per model from the baselines (LOP, CDC, full replication), "
            "checked equal for every study; all HVs recomputed in it",
            "total_wall_s": total,
            "code": code,
        },
        rows=rows,
        summary=summary,
        notes=notes,
    )


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def table(result: BenchResult) -> Table:
    lines = []
    for sampler, per_model in result.summary.items():
        for model, info in per_model.items():
            for c in CLUSTERINGS:
                by = info["by_clustering"][c]
                is_greedy = c == "greedy"
                low = by["best_acc_rf_le_limit_mean"]
                lines.append(
                    [
                        f"{model.removeprefix('digits-')} {sampler}"
                        if c == CLUSTERINGS[0]
                        else "",
                        c,
                        _pm(by["hv_mean"], by["hv_std"]),
                        " ".join(f"{v:.3f}" for v in by["hv_per_seed"]),
                        _pm(info["hv_diff_mean"], info["hv_diff_std"]) if is_greedy else "",
                        str(info["wins"][c]),
                        f"{by['front_size_mean']:.1f}",
                        f"{by['front_rf_mean']:.2f}",
                        f"{low:.1f}" if low is not None else "-",
                        f"{by['partition_ms_median']:.1f}",
                        f"{by['evaluate_ms_median']:.0f}",
                    ]
                )
    return make_table(
        "Clustering: front hypervolume in one box per model (mean ± std over seeds); "
        "acc@RF = best worst-case 1-failure Top-1 %, mean over seeds; ms = median per trial",
        [
            "model sampler",
            "clustering",
            "HV mean ± std",
            "HV per seed",
            "greedy-dendro",
            "wins",
            "front",
            "front RF",
            f"acc@RF<={RF_LIMIT}",
            "part. ms",
            "eval ms",
        ],
        lines,
    )


def main() -> None:
    parser = quick_parser(__doc__ or "")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--gp-trials", type=int, default=60)
    parser.add_argument("--gp-seeds", type=int, default=2)
    parser.add_argument("--gp-model", default="digits-vgg-bn", help="'' to skip the gp runs")
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = run(
        args.quick,
        trials=args.trials,
        seeds=args.seeds,
        models=tuple(args.models.split(",")),
        gp_trials=args.gp_trials,
        gp_seeds=args.gp_seeds,
        gp_model=args.gp_model or None,
        test_size=args.test_size,
    )
    report(result, table(result))


if __name__ == "__main__":
    main()
