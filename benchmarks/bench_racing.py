"""Racing (`dse optimize --racing F`) vs full evaluation: the same trials, the fronts, the time.

Paired runs: on each embedded model (ND = 4, acc,mem,energy, worst-case 1-failure Top-1, 500
test images), one in-memory study with full evaluation and one per racing share F, all with
the random sampler and the same seed, so every study proposes the same threshold vectors
(the script checks it). Trial by trial, the full run gives the exact accuracy of every
vector; the racing run says which were raced out. Reported per F:

- raced out: trials finished on the subset only;
- speed-up: accuracy-evaluation seconds (summed over trials) and study wall time, full over
  racing;
- the fronts: trials on the full run's front and on the racing run's front; ``missed``: full
  front members that racing raced out; ``bound misses``: raced-out trials whose exact
  accuracy (full run) is above the upper bound racing used, i.e. outside the subset's
  statistical error (z = 3 per failure set);
- HV ratio: hypervolume of the racing front (exact values) over the full front's, in the
  study's reference box (the same in both: it comes from the baselines).

Plus, unpaired, the default GP sampler on digits-vgg-bn with and without racing (F = 0.2).

    python -m benchmarks.bench_racing [--quick]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from benchmarks._common import (
    BenchResult,
    code_state,
    console,
    make_table,
    measure_interleaved,
    quick_parser,
    report,
)
from dse import (
    OptimizeResult,
    RobustnessProblem,
    StudySettings,
    TrialRecord,
    Workbench,
    open_workbench,
    prepare_study,
    run_study,
)

NAME = "racing"
SEED = 0
GP_MODEL, GP_FRACTION, GP_TRIALS = "digits-vgg-bn", 0.2, 60
TIMED_PARTITIONS = 8  # partitions timed interleaved per racing run
MAX_MISS_RATE = 0.01  # raced-out trials whose exact accuracy is above their bound
MIN_HV_RATIO = 0.99  # racing front's hypervolume over the full front's


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    fractions: tuple[float, ...]
    trials: int
    test_size: int
    gp: bool  # also the unpaired GP comparison


FULL = Plan(
    ("digits-alexnet", "digits-vgg-bn", "digits-convnext"), (0.1, 0.2, 0.3), 100, 500, True
)
QUICK = Plan(("digits-vgg-bn",), (0.2,), 20, 200, False)


def study_run(
    bench: Workbench, model: str, racing: float | None, sampler: str, trials: int, test: int
) -> tuple[OptimizeResult, float, RobustnessProblem]:
    settings = StudySettings.parse(
        model=model, test_size=test, racing=racing, sampler=sampler, seed=SEED
    )
    problem = RobustnessProblem(settings, bench=bench)
    with prepare_study(settings, storage_url=":memory:", problem=problem) as prepared:
        start = time.perf_counter()
        result = run_study(prepared, trials=trials)
        return result, time.perf_counter() - start, problem


def interleaved_seconds(
    problem: RobustnessProblem, result: OptimizeResult, samples: int = TIMED_PARTITIONS
) -> dict[str, float]:
    """Seconds of one evaluation on the whole test set, the racing subset and the rest,
    timed round-robin on the same partitions (the study's first random trials), so that the
    machine's load hits all three alike; medians of 3, per partition."""
    race = problem.race
    assert race is not None
    trials = sorted(_complete(result).values(), key=lambda t: t.number)[2 : 2 + samples]
    devices = problem.settings.devices
    partitions = [
        problem.partitioner.partition_for(
            problem.space.thresholds([t.params[n] for n in problem.space.names]), devices
        )
        for t in trials
    ]
    whole = problem.bench.require_evaluator()
    sets = problem.failure_sets

    def each(evaluate: Callable[..., object]) -> Callable[[], None]:
        def run_all() -> None:
            for partition in partitions:
                evaluate(partition, sets)

        return run_all

    timings = measure_interleaved(
        {
            "whole": each(whole.correct_counts),
            "subset": each(race.first.correct_counts),
            "rest": each(race.rest.correct_counts),
        },
        repeats=3,
    )
    return {name: t.median / len(partitions) for name, t in timings.items()}


def _timed_speedup(seconds: dict[str, float], trials: int, finished: int) -> float:
    """Full evaluation of every trial over racing's subset for all plus the rest for the
    finished ones, from the interleaved per-evaluation times."""
    racing = trials * seconds["subset"] + finished * seconds["rest"]
    return trials * seconds["whole"] / racing


def _complete(result: OptimizeResult) -> dict[int, FrozenTrial]:
    trials = result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {t.number: t for t in trials}


def _record(trial: FrozenTrial) -> TrialRecord:
    record = TrialRecord.from_trial(trial)
    assert record is not None, f"trial {trial.number} has no record"
    return record


def _evaluation_s(trials: dict[int, FrozenTrial]) -> float:
    return sum(_record(t).seconds.get("accuracy", 0.0) for t in trials.values())


def _work_speedup(trials: dict[int, FrozenTrial]) -> float:
    """Test images a full evaluation of every trial takes over those racing took: the
    speed-up of the masked forward, which is almost all of a trial, free of machine load."""
    races = [_record(t).race for t in trials.values()]
    images = [race.images for race in races if race is not None]
    total = [race.test_images for race in races if race is not None]
    return sum(total) / sum(images)


def compare(full: OptimizeResult, raced: OptimizeResult, paired: bool) -> dict[str, Any]:
    """Raced-out count, front agreement, bound misses and HV ratio of one racing run."""
    exact, racing = _complete(full), _complete(raced)
    if paired and {n: t.params for n, t in exact.items()} != {
        n: t.params for n, t in racing.items()
    }:
        raise RuntimeError("the paired runs proposed different threshold vectors")
    out = {n for n, t in racing.items() if _record(t).raced_out}
    front_full = {t.number for t in full.front}
    front_raced = {t.number for t in raced.front}
    row: dict[str, Any] = {
        "raced_out": len(out),
        "raced_out_share": len(out) / max(1, len(racing)),
        "front_full": len(front_full),
        "front_racing": len(front_raced),
        "hv_full": full.hypervolume,
        "hv_racing": raced.hypervolume,
        "hv_ratio": raced.hypervolume / full.hypervolume if full.hypervolume else None,
    }
    if paired:
        row.update(_paired(exact, racing, out, front_full, front_raced))
    return row


def _paired(
    exact: dict[int, FrozenTrial],
    racing: dict[int, FrozenTrial],
    out: set[int],
    front_full: set[int],
    front_raced: set[int],
) -> dict[str, Any]:
    misses = []
    for n in sorted(out):
        race = _record(racing[n]).race
        assert race is not None
        truth, estimate = exact[n].values[0], racing[n].values[0]
        if truth > race.acc_upper + 1e-9:
            misses.append(
                {"trial": n, "exact": truth, "estimate": estimate, "upper": race.acc_upper}
            )
    missed = sorted(front_full - front_raced)
    return {
        "front_common": len(front_full & front_raced),
        "front_identical": front_full == front_raced,
        "missed_front_trials": [
            {"trial": n, "exact_acc": exact[n].values[0], "estimate": racing[n].values[0]}
            for n in missed
        ],
        "bound_misses": misses,
        "max_abs_exact_minus_estimate": max(
            (abs(exact[n].values[0] - racing[n].values[0]) for n in out), default=0.0
        ),
    }


def _finished_values_equal(full: OptimizeResult, raced: OptimizeResult) -> float:
    """Max |difference| of the objective values of trials racing finished (float noise)."""
    exact, racing = _complete(full), _complete(raced)
    diffs = [
        np.abs(np.subtract(exact[n].values, t.values)).max()
        for n, t in racing.items()
        if not _record(t).raced_out and n in exact
    ]
    return float(max(diffs, default=0.0))


def model_rows(
    model: str, fractions: Sequence[float], trials: int, test: int
) -> list[dict[str, Any]]:
    bench = open_workbench(model, test_size=test)
    bench.require_evaluator()  # first-layer cache and kernels, outside the timings
    full, full_wall, _ = study_run(bench, model, None, "random", trials, test)
    console.print(f"{model}: full evaluation {full_wall:.1f} s")
    base = {"model": model, "sampler": "random", "trials": trials, "test_images": test}
    full_row = {**base, "racing": None, "wall_s": full_wall}
    full_row["evaluation_s"] = _evaluation_s(_complete(full))
    rows = [full_row]
    for fraction in fractions:
        raced, wall, problem = study_run(bench, model, fraction, "random", trials, test)
        row = _racing_row(base, fraction, full_row, (raced, wall))
        row.update(compare(full, raced, paired=True))
        row["finished_values_max_diff"] = _finished_values_equal(full, raced)
        row["seconds_per_evaluation"] = interleaved_seconds(problem, raced)
        finished = row["trials"] - row["raced_out"]
        row["speedup_timed"] = _timed_speedup(row["seconds_per_evaluation"], trials, finished)
        rows.append(row)
        console.print(f"{model}: racing {fraction} {wall:.1f} s, {row['raced_out']} raced out")
    return rows


def _racing_row(
    base: dict[str, Any],
    fraction: float,
    full_row: dict[str, Any],
    run: tuple[OptimizeResult, float],
) -> dict[str, Any]:
    raced, wall = run
    row = {**base, "racing": fraction, "wall_s": wall}
    row["evaluation_s"] = _evaluation_s(_complete(raced))
    row["speedup_evaluation"] = full_row["evaluation_s"] / row["evaluation_s"]
    row["speedup_wall"] = full_row["wall_s"] / wall
    row["speedup_work"] = _work_speedup(_complete(raced))
    return row


def gp_rows(test: int) -> list[dict[str, Any]]:
    bench = open_workbench(GP_MODEL, test_size=test)
    bench.require_evaluator()
    full, full_wall, _ = study_run(bench, GP_MODEL, None, "gp", GP_TRIALS, test)
    raced, wall, _ = study_run(bench, GP_MODEL, GP_FRACTION, "gp", GP_TRIALS, test)
    base = {"model": GP_MODEL, "sampler": "gp", "trials": GP_TRIALS, "test_images": test}
    first = {**base, "racing": None, "wall_s": full_wall}
    first["evaluation_s"] = _evaluation_s(_complete(full))
    second = _racing_row(base, GP_FRACTION, first, (raced, wall))
    second.update(compare(full, raced, paired=False))
    return [first, second]


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the paired racing runs, and whether racing stayed within its error."""
    raced = [r for r in rows if r["racing"] is not None and r["sampler"] == "random"]
    misses = sum(len(r["bound_misses"]) for r in raced)
    out = sum(r["raced_out"] for r in raced)
    min_hv = min(r["hv_ratio"] for r in raced)
    return {
        "raced_out": out,
        "bound_misses": misses,
        "bound_miss_rate": misses / max(1, out),
        "missed_front_trials": sum(len(r["missed_front_trials"]) for r in raced),
        "min_hv_ratio": min_hv,
        "speedup_work": {f"{r['model']} {r['racing']}": r["speedup_work"] for r in raced},
        "speedup_timed": {f"{r['model']} {r['racing']}": r["speedup_timed"] for r in raced},
        "speedup_evaluation": {
            f"{r['model']} {r['racing']}": r["speedup_evaluation"] for r in raced
        },
        "target_met": misses <= MAX_MISS_RATE * out and min_hv >= MIN_HV_RATIO,
    }


def run(quick: bool = False) -> BenchResult:
    plan = QUICK if quick else FULL
    rows = [
        row
        for model in plan.models
        for row in model_rows(model, plan.fractions, plan.trials, plan.test_size)
    ]
    if plan.gp:
        rows += gp_rows(plan.test_size)
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "models": list(plan.models),
            "fractions": list(plan.fractions),
            "trials": plan.trials,
            "test_images": plan.test_size,
            "seed": SEED,
            "torch_threads": torch.get_num_threads(),
            "code": code_state(),
        },
        rows=rows,
        summary=summarise(rows),
        notes=[
            "paired: random sampler, seed 0, the same threshold vectors in every run of a "
            "model; exact accuracy from the full run.",
            "bound misses: raced-out trials whose exact acc is above the bound racing used.",
            "missed: trials on the full run's front that racing raced out.",
            "gp rows: the default sampler, unpaired (its proposals follow the values).",
            "speed-up work: test images of a full evaluation of every trial over those "
            "racing evaluated (the masked forward is ~96 % of a trial); speed-up timed: the "
            "same from per-evaluation times of the whole set, the subset and the rest, timed "
            "interleaved on 8 of the trials' partitions; eval s and wall s: the studies' own "
            "times, on a shared machine (load average in the JSON).",
            f"target: bound misses in at most {MAX_MISS_RATE:.0%} of the raced-out trials "
            f"(z = 3 per failure set: about 0.13 % per set) and HV ratio >= {MIN_HV_RATIO}.",
        ],
    )


COLUMNS = (
    "model",
    "sampler",
    "racing",
    "raced out",
    "speed-up work",
    "speed-up timed",
    "eval s",
    "speed-up eval",
    "wall s",
    "speed-up wall",
    "front full / racing / common",
    "missed",
    "bound misses",
    "HV ratio",
)


def _row(r: dict[str, Any]) -> list[object]:
    if r["racing"] is None:
        blank = [""] * 5
        return [
            r["model"],
            r["sampler"],
            "off",
            "",
            "",
            "",
            r["evaluation_s"],
            "",
            r["wall_s"],
        ] + blank
    fronts = f"{r['front_full']} / {r['front_racing']} / {r.get('front_common', '-')}"
    return [
        r["model"],
        r["sampler"],
        r["racing"],
        f"{r['raced_out']}/{r['trials']}",
        r["speedup_work"],
        r.get("speedup_timed"),
        r["evaluation_s"],
        r["speedup_evaluation"],
        r["wall_s"],
        r["speedup_wall"],
        fronts,
        len(r.get("missed_front_trials", [])) if "missed_front_trials" in r else "-",
        len(r.get("bound_misses", [])) if "bound_misses" in r else "-",
        r["hv_ratio"],
    ]


def table(result: BenchResult) -> Table:
    title = f"racing vs full evaluation, {result.settings['test_images']} test images"
    return make_table(title, COLUMNS, [_row(r) for r in result.rows])


def main(argv: Sequence[str] | None = None) -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = run(quick=args.quick)
    report(result, table(result))


if __name__ == "__main__":
    main()
