"""`prepare_study`: the checks before a study is created or resumed."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dse import (
    FINGERPRINTS_ATTR,
    SETTINGS_ATTR,
    RobustnessProblem,
    StudySettings,
    is_feasible,
    named_constraints,
    open_storage,
    prepare_study,
    run_study,
)
from dse._optimize_view import column_format, front_footnotes
from robustdice_core import InvalidParameterError
from robustdice_core.costs import MB

SETTINGS = StudySettings(model="digits-vgg-bn", objectives=("mem", "fps"), test_size=50)


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(SETTINGS)


def test_min_fps_reachable_only_by_replication_is_accepted(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    baselines = problem.baselines()
    lop = baselines["lop"].outcome.costs.fps
    replication = baselines["replication"].outcome.costs.fps
    assert replication > lop  # a tiny model: exchanging nothing beats splitting the work
    target = (lop + replication) / 2
    settings = SETTINGS.replace(min_fps=target)
    constrained = problem.for_settings(settings)
    prepared = prepare_study(settings, storage_url=":memory:", study_name="f", problem=constrained)
    result = run_study(prepared, trials=4)
    assert result.front, "the enqueued full-replication trial meets the constraint"
    too_fast = SETTINGS.replace(min_fps=2 * replication)
    with pytest.raises(InvalidParameterError, match="the fastest reaches"):
        prepare_study(
            too_fast,
            storage_url=":memory:",
            study_name="g",
            problem=problem.for_settings(too_fast),
        )
    with pytest.raises(InvalidParameterError, match="change the problem itself"):
        problem.for_settings(SETTINGS.replace(devices=3))


def test_a_second_run_of_the_same_study_is_refused(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"  # one process per study (a journal is shared)
    first = prepare_study(
        SETTINGS, storage_url=storage, study_name="s", out_root=tmp_path / "out", problem=problem
    )
    with pytest.raises(InvalidParameterError, match="being run by another"):
        prepare_study(
            SETTINGS,
            storage_url=storage,
            study_name="s",
            out_root=tmp_path / "out",
            problem=problem,
        )
    first.close()
    with prepare_study(
        SETTINGS, storage_url=storage, study_name="s", out_root=tmp_path / "out", problem=problem
    ) as again:
        assert again.study.study_name == "s"
    with prepare_study(  # the `with` above released the lock
        SETTINGS, storage_url=storage, study_name="s", out_root=tmp_path / "out", problem=problem
    ):
        pass


def test_a_half_created_study_is_created_again(problem: RobustnessProblem, tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    partial = optuna.create_study(storage=storage, study_name="h", directions=["minimize"] * 2)
    partial.set_user_attr(SETTINGS_ATTR, SETTINGS.to_dict())  # killed right after this
    with prepare_study(
        SETTINGS, storage_url=str(tmp_path / "s.log"), study_name="h", problem=problem
    ) as prepared:
        assert FINGERPRINTS_ATTR in prepared.study.user_attrs


def test_changed_file_contents_are_refused(problem: RobustnessProblem, tmp_path: Path) -> None:
    url = str(tmp_path / "s.log")
    with prepare_study(SETTINGS, storage_url=url, study_name="c", problem=problem) as prepared:
        stored = dict(prepared.study.user_attrs[FINGERPRINTS_ATTR])
        stored["device_profile"] = "edited"
        prepared.study.set_user_attr(FINGERPRINTS_ATTR, stored)
    with pytest.raises(InvalidParameterError, match="other contents of: device_profile"):
        prepare_study(SETTINGS, storage_url=url, study_name="c", problem=problem)


def test_out_must_be_a_folder(problem: RobustnessProblem, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidParameterError, match="`--out` must be a writable folder"):
        prepare_study(
            SETTINGS,
            storage_url=":memory:",
            study_name="o",
            out_root=tmp_path / "file" / "o",
            problem=problem,
        )


def test_mem_is_the_partitions_own_and_max_mem_mb_counts_the_runtime(
    problem: RobustnessProblem,
) -> None:
    baselines = problem.baselines()
    mem = {name: e.values[0] for name, e in baselines.items()}  # objectives mem,fps
    runtime_mb = problem.device.runtime_overhead_bytes.value / MB
    assert mem["replication"] > 3 * mem["lop"], "the 4x weights show in the objective"
    for evaluation in baselines.values():
        costs = evaluation.outcome.costs
        assert costs.max_memory_mb == pytest.approx(evaluation.values[0] + runtime_mb)
    limit = runtime_mb + (mem["lop"] + mem["replication"]) / 2
    settings = SETTINGS.replace(max_mem_mb=limit)
    with prepare_study(
        settings, storage_url=":memory:", study_name="m", problem=problem.for_settings(settings)
    ) as prepared:
        result = run_study(prepared, trials=2)  # the two enqueued ends of the space
    first, second = sorted(result.study.trials, key=lambda t: t.number)
    assert named_constraints(first, settings.constraint_names)["max_mem_mb"] > 0
    assert not is_feasible(first)  # t = 0: full replication
    assert is_feasible(second)
    assert "max_mem_mb" not in str(first.user_attrs), "constraints live in Optuna's record only"
    footnotes = " ".join(front_footnotes(result))
    assert f"runtime constant of {runtime_mb:.0f} MB" in footnotes


def test_each_table_column_has_one_format() -> None:
    fmt = column_format([1024.21, 14.6, 99.0])
    assert [fmt(v) for v in (1024.21, 14.6)] == ["1024", "15"]
    fmt = column_format([0.0038, 0.00849])
    assert [fmt(0.0038), fmt(0.00849)] == ["0.003800", "0.008490"]
    fmt = column_format([99.2, 14.6, 14.0], decimals=1)
    assert [fmt(v) for v in (99.2, 14.0)] == ["99.2", "14.0"]


def test_the_lock_belongs_to_the_study_in_its_storage_not_to_the_out_folder(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    with prepare_study(
        SETTINGS, storage_url=storage, study_name="s", out_root=tmp_path / "a", problem=problem
    ):
        with pytest.raises(InvalidParameterError, match="being run by another"):
            prepare_study(
                SETTINGS,
                storage_url=storage,
                study_name="s",
                out_root=tmp_path / "b",
                problem=problem,
            )
        with prepare_study(  # another study in the same storage is free to run
            SETTINGS, storage_url=storage, study_name="t", problem=problem
        ):
            pass


def test_exports_never_replace_another_studys_files(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with prepare_study(
        SETTINGS,
        storage_url=str(tmp_path / "s.log"),
        study_name="s",
        out_root=out,
        problem=problem,
    ) as prepared:
        run_study(prepared, trials=2)
    rows = (out / "s" / "trials.csv").read_text()
    for other in (":memory:", f"sqlite:///{tmp_path / 'other.db'}"):
        with pytest.raises(InvalidParameterError, match="holds the exports of another study"):
            prepare_study(SETTINGS, storage_url=other, study_name="s", out_root=out)
    assert (out / "s" / "trials.csv").read_text() == rows
    with prepare_study(  # the same study again: its own folder
        SETTINGS,
        storage_url=str(tmp_path / "s.log"),
        study_name="s",
        out_root=out,
        problem=problem,
    ):
        pass


@pytest.mark.parametrize("name", ["../../escape", "a/b", "x" * 300, ".hidden", "", "a b"])
def test_study_names_are_checked_before_anything_is_written(
    problem: RobustnessProblem, tmp_path: Path, name: str
) -> None:
    storage = tmp_path / "s.log"
    with pytest.raises(InvalidParameterError, match="`--study` must be"):
        prepare_study(
            SETTINGS,
            storage_url=str(storage),
            study_name=name,
            out_root=tmp_path / "out",
            problem=problem,
        )
    assert not (tmp_path / "out").exists() and not storage.exists()
