"""Exports a user can trust: feasibility, accuracy units, matching columns, the units table, and
constraints that optuna-dashboard can see."""

from __future__ import annotations

import io
import json
import wsgiref.util
from collections.abc import Iterator
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import FrozenTrial, TrialState

from dse import (
    SETTINGS_ATTR,
    OptimizeResult,
    ReferenceBox,
    RobustnessProblem,
    StudySettings,
    TrialRecord,
    baselines_frame,
    build_space,
    is_feasible,
    prepare_study,
    record_constraints,
    run_study,
    trials_frame,
    units_frame,
)
from robustdice_core.costs import MB

SETTINGS = StudySettings(model="digits-vgg-bn", test_size=50, sampler="random")
TRIAL_ONLY = {"trial", "state", "pareto", "duration_s"}
BASELINE_ONLY = {"method", "label"}


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(SETTINGS)


@pytest.fixture(scope="module")
def result(problem: RobustnessProblem) -> OptimizeResult:
    """A max-mem study: full replication (infeasible), LOP (feasible), one random trial, and
    one trial that failed."""
    baselines = problem.baselines()
    runtime_mb = problem.device.runtime_overhead_bytes.value / MB
    mem = {name: e.values[1] for name, e in baselines.items()}  # objectives acc,mem,energy
    settings = SETTINGS.replace(max_mem_mb=runtime_mb + (mem["lop"] + mem["replication"]) / 2)
    with prepare_study(
        settings, storage_url=":memory:", study_name="e", problem=problem.for_settings(settings)
    ) as prepared:
        done = run_study(prepared, trials=3)
    failed = done.study.ask()
    done.study.tell(failed, state=TrialState.FAIL)
    return done


@pytest.fixture(scope="module")
def trials(result: OptimizeResult) -> pd.DataFrame:
    return trials_frame(result.study, result.box).set_index("trial")


@pytest.fixture(scope="module")
def baselines(result: OptimizeResult) -> pd.DataFrame:
    names = list(result.problem.settings.objectives)
    return baselines_frame(
        result.baselines, names, constraint_names=result.problem.constraint_names
    ).set_index("method")


def test_only_completed_trials_within_their_constraints_are_feasible(
    result: OptimizeResult, trials: pd.DataFrame
) -> None:
    assert trials["state"].tolist() == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    replication, lop, _, failed = sorted(result.study.trials, key=lambda t: t.number)
    assert trials.loc[replication.number, "constraint[max_mem_mb]"] > 0
    assert not is_feasible(replication) and is_feasible(lop)
    assert not is_feasible(failed), "a failed trial has no constraints, yet is not feasible"
    assert trials["feasible"].tolist() == [is_feasible(t) for t in result.study.trials]
    assert not trials.loc[failed.number, "feasible"]
    assert not trials.loc[failed.number, "pareto"]


def test_accuracy_is_one_unit_percent_with_columns_that_cannot_be_misread(
    trials: pd.DataFrame, baselines: pd.DataFrame
) -> None:
    per_set = [f"top1_pct[failed {d}]" for d in range(SETTINGS.devices)]
    assert {"top1_pct[no failure]", *per_set} <= set(trials.columns)
    assert not [c for c in trials.columns if c.startswith("acc[")]
    for frame in (trials, baselines):
        done = frame.dropna(subset=["acc"])
        # the objective is the worst single-device failure (`--acc-metric worst`): same unit
        pd.testing.assert_series_equal(
            done["acc"], done[per_set].min(axis=1), check_names=False, atol=1e-9
        )
        assert (done["top1_pct[no failure]"] > 50).all(), "percent, not a fraction"


def test_records_store_percent_under_a_new_key_and_ignore_old_fractions(
    result: OptimizeResult,
) -> None:
    lop = result.baselines["lop"]
    record = TrialRecord.from_evaluation(lop)
    assert lop.outcome.accuracy is not None
    assert record.top1_pct["no failure"] == pytest.approx(100 * lop.outcome.accuracy.accuracy[0])
    attrs = record.to_user_attrs()
    assert "top1_pct" in attrs and "accuracy" not in attrs
    old = {**attrs, "accuracy": {"none": 0.98, "0": 0.14}}
    del old["top1_pct"]
    read = TrialRecord.from_trial(_frozen(old))
    assert read is not None and not read.top1_pct, "old fractions are never read as percent"


def test_baselines_have_every_record_column_that_trials_have(
    trials: pd.DataFrame, baselines: pd.DataFrame, result: OptimizeResult
) -> None:
    params = set(result.problem.space.names)
    trial_columns = set(trials.reset_index().columns) - TRIAL_ONLY - params
    assert set(baselines.reset_index().columns) - BASELINE_ONLY == trial_columns
    assert {"memory_mb[d3]", "top1_pct[failed 1]", "seconds_costs"} <= trial_columns
    assert baselines.loc["replication", "replication_factor"] == 4.0
    assert not baselines.loc["replication", "feasible"]
    assert baselines.loc["replication", "constraint[max_mem_mb]"] > 0


def test_units_table_names_each_units_layer_and_search_parameter(
    problem: RobustnessProblem, trials: pd.DataFrame
) -> None:
    units = problem.bench.net.units
    frame = units_frame(units, problem.space)
    assert frame["unit"].tolist() == [u.index for u in units]
    assert frame["layer"].tolist() == [u.name for u in units]
    assert frame.loc[0, ["kind", "neurons", "param"]].tolist() == ["conv", 32, "t:u000"]
    assert set(frame["param"]) <= set(trials.columns), "every parameter is a trials column"
    assert (frame["low"] < frame["high"]).all()
    tied = units_frame(
        units, build_space(units, problem.partitioner.one_cluster_thresholds, tie="type")
    )
    assert dict(zip(tied["layer"], tied["param"], strict=True)) == {
        u.name: f"t:{u.kind}" for u in units
    }


def test_optuna_dashboard_sees_constraints_and_marks_an_infeasible_trial() -> None:
    dashboard = pytest.importorskip("optuna_dashboard")
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["minimize", "minimize"])
    study.set_user_attr(SETTINGS_ATTR, StudySettings(max_mem_mb=1100).to_dict())
    values = {0: ((1.0, 1.0), 5.0), 1: ((2.0, 2.0), -1.0)}  # 0 dominates 1 but breaks a limit

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        objectives, excess = values[trial.number]
        record_constraints(trial, [excess])
        return objectives

    study.optimize(objective, n_trials=2)
    infeasible, feasible = study.trials
    assert infeasible.constraints == {"0": 5.0} and not is_feasible(infeasible)
    assert [t.number for t in study.best_trials] == [feasible.number]
    frame = trials_frame(study, ReferenceBox((0.0, 0.0), (3.0, 3.0), (False, False)))
    assert [c for c in frame.columns if c.startswith("constraint")] == ["constraint[max_mem_mb]"]
    assert frame[["feasible", "pareto"]].values.tolist() == [[False, False], [True, True]]
    app = dashboard.wsgi(storage)
    (summary,) = _get_json(app, "/api/studies")["study_summaries"]
    detail = _get_json(app, f"/api/studies/{summary['study_id']}")
    shown = {t["number"]: t["constraints"] for t in detail["trials"]}
    assert shown == {0: [5.0], 1: [-1.0]}
    # the dashboard's own rule (Pareto-front, history and slice plots): all(c <= 0)
    assert [all(c <= 0 for c in shown[n]) for n in (0, 1)] == [False, True]


def _get_json(app: Any, path: str) -> Any:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    status: list[str] = []
    body = app(environ, lambda s, _headers, _exc=None: status.append(s))
    assert status == ["200 OK"], status
    return json.load(io.BytesIO(b"".join(_chunks(body))))


def _chunks(body: Any) -> Iterator[bytes]:
    yield from body


def _frozen(user_attrs: dict[str, Any]) -> FrozenTrial:
    return optuna.trial.create_trial(values=[1.0], user_attrs=user_attrs)
