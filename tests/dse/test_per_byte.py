"""Comparing methods at a matched replication factor (docs/per_byte.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dse import RobustnessProblem, StudySettings, Workbench, open_workbench
from dse._compare import COMPARISONS, MATCHED_METHODS, SeedMean, compare_methods
from dse.cli import app, main
from robustdice_core import InvalidParameterError, UnknownNameError
from robustdice_core.failures import FailureAccuracy
from robustdice_core.partition import PARTITIONERS

TEST_SIZE = 100


@pytest.fixture(scope="module")
def bench() -> Workbench:
    return open_workbench("digits-vgg-bn", test_size=TEST_SIZE)


def test_every_partitioner_can_be_compared() -> None:
    assert COMPARISONS.names() == PARTITIONERS.names()


def test_matched_comparison_spends_the_same_memory(bench: Workbench) -> None:
    results = compare_methods(bench, 4, replication=1.5, seeds=2, failures=[0, 1])
    by_name = {r.name: r for r in results}
    assert tuple(by_name) == MATCHED_METHODS
    total = sum(bench.unit_sizes)
    reference = by_name["robustdice"].partition
    assert reference.replication_factor == pytest.approx(1.5, abs=0.02)
    assert by_name["budgeted"].replication_factor == pytest.approx(1.5, abs=1 / (2 * total))
    assert dict(by_name["budgeted"].partition.options)["allocation"] == "model-wide"
    for control in ("random-clustering", "random-copies"):
        result = by_name[control]
        assert len(result.partitions) == 2 and len(set(result.partitions)) == 2
        for partition in result.partitions:  # exactly RobustDiCE's copies per unit
            assert partition.unit_replication == pytest.approx(reference.unit_replication)
    for name in MATCHED_METHODS:
        assert by_name[name].target == (None if name in ("lop", "cdc", "replication") else 1.5)
    data = by_name["random-copies"].to_dict(0.1)
    assert data["seeds"] == 2 and data["replication_target"] == 1.5
    assert "expected_accuracy" not in data  # only k = 0, 1 were evaluated
    worst = np.mean([a.by_size(1).worst for a in by_name["random-copies"].accuracies])
    assert data["by_failed_devices"][1]["worst"] == pytest.approx(worst)


def test_threshold_comparison_keeps_its_default_methods(bench: Workbench) -> None:
    results = compare_methods(bench, 4, 0.3, failures=[0, 1])
    assert [r.name for r in results] == ["robustdice", "lop", "cdc", "replication"]
    chosen = compare_methods(bench, 4, 0.3, methods=["budgeted", "lop"], failures=[1])
    robustdice = compare_methods(bench, 4, 0.3, methods=["robustdice"], failures=[1])[0]
    assert [r.name for r in chosen] == ["budgeted", "lop"]
    assert chosen[0].target == pytest.approx(robustdice.replication_factor)


def test_seed_mean_averages_each_seeds_statistics() -> None:
    sets = ((), (0,), (1,))
    runs = (
        FailureAccuracy(2, sets, (1.0, 0.2, 0.8)),
        FailureAccuracy(2, sets, (1.0, 0.6, 0.4)),
    )
    stats = SeedMean(runs).by_size(1)
    assert (stats.worst, stats.mean, stats.best) == pytest.approx((0.3, 0.5, 0.7))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"thresholds": 0.3, "replication": 1.5}, InvalidParameterError, "not both"),
        ({}, InvalidParameterError, "give either"),
        ({"replication": 4.5}, InvalidParameterError, r"must be in \[1, 4\]"),
        ({"replication": 2.5}, InvalidParameterError, "needs `--copies` >= 3"),
        ({"replication": 1.5, "methods": ["nope"]}, UnknownNameError, "unknown partitioner"),
        ({"replication": 1.5, "seeds": 0}, InvalidParameterError, "`--seeds` must be"),
    ],
)
def test_bad_requests_are_refused(
    bench: Workbench, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        compare_methods(bench, 4, **kwargs)  # type: ignore[arg-type]


def test_cli_evaluate_at_a_replication_factor(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", "--replication", "1.3", "--methods", "robustdice,random-copies"]
    args += ["--seeds", "2", "--test-size", str(TEST_SIZE), "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "at replication factor 1.3" in result.output
    assert "mean of 2 seeds" in result.output
    payload = json.loads(out.read_text())
    assert payload["replication_target"] == 1.3
    factors = [r["replication_factor"] for r in payload["results"]]
    assert [r["method"] for r in payload["results"]] == ["robustdice", "random-copies"]
    assert factors[0] == pytest.approx(1.3, abs=0.02) and factors[1] == factors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--thresholds", "0.3", "--replication", "1.5"], "not both"),
        (["--methods", "lop,foo"], "`--methods`: unknown partitioner `foo`"),
        (["--methods", ""], "`--methods` must name at least one"),
        (["--replication", "0.5"], r"`--replication` must be in [1, 4]"),
        (["--copies", "0"], "`--copies` must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["dse", "evaluate", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- dse optimize
def test_default_method_keeps_old_study_keys() -> None:
    default = StudySettings()
    assert "method" not in default.to_dict()  # stored settings and names as before
    budgeted = StudySettings(method="budgeted")
    assert budgeted.to_dict()["method"] == "budgeted"
    assert budgeted.key() != default.key()
    assert StudySettings.from_dict(budgeted.to_dict()) == budgeted
    assert default.differences(budgeted) == ["method"]
    assert budgeted.differences(default) == ["method"]


def test_budgeted_copies_follow_the_failures_covered() -> None:
    assert StudySettings(method="budgeted").copies == 2
    assert StudySettings(method="budgeted", failures=(1, 2)).copies == 3
    assert StudySettings(method="budgeted", devices=2, failures=(1,)).copies == 2


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"method": "kmeans"}, UnknownNameError, "unknown search method `kmeans`"),
        (
            {"method": "budgeted", "threshold_range": (0.0, 0.5)},
            InvalidParameterError,
            "`--threshold-range` sets RobustDiCE thresholds",
        ),
    ],
)
def test_bad_methods_are_refused(
    changes: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        StudySettings(**changes)  # type: ignore[arg-type]


def test_budgeted_problem_searches_fractions(bench: Workbench) -> None:
    settings = StudySettings(
        model="digits-vgg-bn", method="budgeted", tie="type", test_size=TEST_SIZE
    )
    problem = RobustnessProblem(settings, bench=bench)
    space = problem.space
    assert space.names and all(n.startswith("f:") for n in space.names)
    assert set(space.low) == {0.0} and set(space.high) == {1.0}
    none, every = problem.evaluate_params(space.low), problem.evaluate_params(space.high)
    assert none.partition.method == every.partition.method == "budgeted"
    assert none.partition.replication_factor == 1.0
    assert every.partition.replication_factor == 2.0  # k = 1: two copies of everything
    assert every.outcome.accuracy is not None
    assert every.outcome.accuracy.by_size(1).worst == every.outcome.accuracy.by_size(0).worst
    half = problem.evaluate_params([0.5] * len(space.names))
    assert half.partition.replication_factor == pytest.approx(1.5, abs=0.01)


def test_graded_problem_searches_levels_from_lop_to_full_replication(bench: Workbench) -> None:
    settings = StudySettings(
        model="digits-vgg-bn", method="graded", tie="type", test_size=TEST_SIZE
    )
    problem = RobustnessProblem(settings, bench=bench)
    space = problem.space
    assert space.names and all(n.startswith("g:") for n in space.names)
    assert set(space.low) == {0.0} and set(space.high) == {1.0}
    none, every = problem.evaluate_params(space.low), problem.evaluate_params(space.high)
    assert none.partition.method == every.partition.method == "graded"
    assert none.partition.replication_factor == 1.0
    assert every.partition.replication_factor == settings.devices  # full replication
    assert every.outcome.accuracy is not None
    worst = every.outcome.accuracy.by_size(max(settings.failures)).worst
    assert worst == every.outcome.accuracy.by_size(0).worst
    third = problem.evaluate_params([1 / 3] * len(space.names))  # 2 copies of everything
    assert third.partition.replication_factor == pytest.approx(2.0, abs=0.01)


def test_robustdice_problem_is_unchanged(bench: Workbench) -> None:
    settings = StudySettings(model="digits-vgg-bn", test_size=TEST_SIZE)
    problem = RobustnessProblem(settings, bench=bench)
    assert all(n.startswith("t:") for n in problem.space.names)
    reference = bench.robustdice()
    assert list(problem.space.high) == [max(h, 1e-6) for h in reference.one_cluster_thresholds]
