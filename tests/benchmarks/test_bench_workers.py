"""`benchmarks.bench_workers`: what it computes from a study's trials (no `dse optimize` run)."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from optuna.trial import FrozenTrial, TrialState

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 28, 12, 0, 0)


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO))  # `benchmarks` is a folder, not an installed package
        yield importlib.import_module("benchmarks.bench_workers")


def trial(
    number: int,
    start_s: float,
    end_s: float | None,
    *,
    seconds: dict[str, float] | None = None,
    worker: str | None = None,
    state: TrialState = TrialState.COMPLETE,
) -> FrozenTrial:
    attrs: dict[str, Any] = {}
    if seconds is not None:
        attrs["seconds"] = seconds
    if worker is not None:
        attrs["worker"] = worker
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=[1.0] if state == TrialState.COMPLETE else None,
        datetime_start=T0 + dt.timedelta(seconds=start_s),
        datetime_complete=None if end_s is None else T0 + dt.timedelta(seconds=end_s),
        params={},
        distributions={},
        user_attrs=attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def study(seconds: dict[str, float] | None = None) -> list[FrozenTrial]:
    """Two workers; 6 COMPLETE trials from 10 s to 13 s, a pruned and a running one."""
    a, b = "host/101", "host/202"
    return [
        trial(0, 10.0, 10.5, seconds=seconds, worker=a),
        trial(1, 10.6, 11.0, seconds=seconds, worker=a),
        trial(2, 11.5, 12.0, seconds=seconds, worker=b),
        trial(3, 11.0, 11.4, seconds=seconds, worker=a),
        trial(4, 12.0, 12.5, seconds=seconds, worker=b),
        trial(5, 12.6, 13.0, seconds=seconds, worker=a),
        trial(6, 13.0, 13.1, worker=b, state=TrialState.PRUNED),  # the budget was full
        trial(7, 9.0, None, worker="host/303", state=TrialState.RUNNING),
    ]


def test_trials_per_minute_spans_first_start_to_last_end(bench: ModuleType) -> None:
    trials = study()
    assert [t.number for t in bench.complete_trials(trials)] == [0, 1, 3, 2, 4, 5]
    assert bench.span_s(trials) == pytest.approx(3.0)
    assert bench.trials_per_minute(trials) == pytest.approx(6 / 3.0 * 60)  # 120
    assert bench.trials_per_minute([]) is None
    assert bench.trials_per_minute([trial(0, 1.0, 1.0)]) is None  # no span


def test_overhead_is_duration_minus_evaluation_seconds(bench: ModuleType) -> None:
    seconds = {"partition": 0.05, "costs": 0.05, "accuracy": 0.2}  # 0.3 s of evaluation
    trials = study(seconds)
    assert bench.evaluation_s(trials[0]) == pytest.approx(0.3)
    overheads = bench.overheads_s(trials)  # COMPLETE only, in start order
    expected = [0.2, 0.1, 0.1, 0.2, 0.2, 0.1]
    assert overheads == pytest.approx(expected)
    assert bench.overheads_s(study()) == []  # no record, no overhead
    assert bench.evaluation_s(trial(0, 0.0, 1.0)) is None


def test_join_time_per_worker_from_the_command_start(bench: ModuleType) -> None:
    started = T0 + dt.timedelta(seconds=2.0)
    joins = bench.join_offsets_s(study(), started)
    # every worker that began a trial, whatever its state
    assert joins == pytest.approx({"host/101": 8.0, "host/202": 9.5, "host/303": 7.0})
    anonymous = [trial(0, 5.0, 6.0), trial(1, 4.0, 6.5)]
    assert bench.join_offsets_s(anonymous, started) == pytest.approx({"first trial": 2.0})
    assert bench.join_offsets_s([], started) == {}
    assert bench.first_trial_of(study(), 202) == T0 + dt.timedelta(seconds=11.5)
    assert bench.first_trial_of(study(), 2) is None  # "/2" is not "/202"


def test_run_row_and_medians(bench: ModuleType) -> None:
    seconds = {"accuracy": 0.3}
    trials = study(seconds)[:6]
    row = bench.run_row(trials, T0 + dt.timedelta(seconds=9.0), wall_s=20.0)
    assert row["complete"] == 6 and row["workers_seen"] == 2
    assert row["trials_per_min"] == pytest.approx(120.0)
    assert row["overhead_ms_median"] == pytest.approx(150.0)
    assert row["evaluation_ms_median"] == pytest.approx(300.0)
    assert (row["join_min_s"], row["join_max_s"]) == pytest.approx((1.0, 2.5))
    assert list(row["join_s"]) == ["host/101", "host/202"]  # earliest first
    runs = [{"wall_s": 10.0, "trials_per_min": None}, {"wall_s": 14.0}, {"wall_s": 30.0}]
    medians = bench.median_of_runs(runs, ("wall_s", "trials_per_min", "join_min_s"))
    assert medians == {"wall_s": 14.0, "trials_per_min": None, "join_min_s": None}


def test_summary_and_table_from_rows(bench: ModuleType) -> None:
    common = importlib.import_module("benchmarks._common")
    rows = [
        {"storage": "journal file", "workers": 1, "trials_per_min": 100.0,
         "wall_s": 12.0, "overhead_ms_median": 13.0, "evaluation_ms_median": 40.0,
         "join_min_s": 9.0, "join_max_s": 9.0, "second_command_join_s": 12.0},
        {"storage": "journal file", "workers": 2, "trials_per_min": 150.0,
         "wall_s": 20.0, "overhead_ms_median": 18.0, "evaluation_ms_median": 65.0,
         "join_min_s": 6.8, "join_max_s": 7.9},
    ]  # fmt: skip
    summary = bench._summary(rows)
    assert summary["speedup_2_over_1"] == pytest.approx({"journal file": 1.5})
    result = common.BenchResult(name="workers", settings={"repeats": 3}, rows=rows)
    assert bench._joins(rows[1]) == "6.8-7.9" and bench._joins(rows[0]) == "9.0"
    assert bench.table(result).row_count == 2
