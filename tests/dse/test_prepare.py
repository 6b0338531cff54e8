"""`prepare_study`: the checks before a study is created or resumed."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dse._optimize import prepare_study, run_study
from dse._problem import RobustnessProblem
from dse._settings import StudySettings
from dse._study import FINGERPRINTS_ATTR, SETTINGS_ATTR, open_storage
from robustdice_core import InvalidParameterError

SETTINGS = StudySettings(model="digits-vgg-bn", objectives=("mem", "fps"), test_size=50)


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(SETTINGS)


def test_min_fps_reachable_only_by_replication_is_accepted(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    baselines = problem.baselines()
    lop = baselines["LOP"].outcome.costs.fps
    replication = baselines["Full replication"].outcome.costs.fps
    assert replication > lop  # a tiny model: exchanging nothing beats splitting the work
    target = (lop + replication) / 2
    settings = StudySettings(**{**SETTINGS.__dict__, "min_fps": target})
    constrained = problem.for_settings(settings)
    prepared = prepare_study(settings, storage_url=":memory:", study_name="f", problem=constrained)
    result = run_study(prepared, trials=4)
    assert result.front, "the enqueued full-replication trial meets the constraint"
    too_fast = StudySettings(**{**SETTINGS.__dict__, "min_fps": 2 * replication})
    with pytest.raises(InvalidParameterError, match="the fastest reaches"):
        prepare_study(
            too_fast,
            storage_url=":memory:",
            study_name="g",
            problem=problem.for_settings(too_fast),
        )
    with pytest.raises(InvalidParameterError, match="change the problem itself"):
        problem.for_settings(StudySettings(**{**SETTINGS.__dict__, "devices": 3}))


def test_a_second_run_of_the_same_study_is_refused(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    storage = str(tmp_path / "s.log")
    first = prepare_study(
        SETTINGS, storage_url=storage, study_name="s", out_dir=tmp_path / "out", problem=problem
    )
    with pytest.raises(InvalidParameterError, match="being run by another"):
        prepare_study(
            SETTINGS,
            storage_url=storage,
            study_name="s",
            out_dir=tmp_path / "out",
            problem=problem,
        )
    assert first.lock is not None
    first.lock.release()
    again = prepare_study(
        SETTINGS, storage_url=storage, study_name="s", out_dir=tmp_path / "out", problem=problem
    )
    assert again.study.study_name == "s"


def test_a_half_created_study_is_created_again(problem: RobustnessProblem, tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    partial = optuna.create_study(storage=storage, study_name="h", directions=["minimize"] * 2)
    partial.set_user_attr(SETTINGS_ATTR, SETTINGS.to_dict())  # killed right after this
    prepared = prepare_study(
        SETTINGS, storage_url=str(tmp_path / "s.log"), study_name="h", problem=problem
    )
    assert FINGERPRINTS_ATTR in prepared.study.user_attrs


def test_changed_file_contents_are_refused(problem: RobustnessProblem, tmp_path: Path) -> None:
    url = str(tmp_path / "s.log")
    prepared = prepare_study(SETTINGS, storage_url=url, study_name="c", problem=problem)
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
            out_dir=tmp_path / "file" / "o",
            problem=problem,
        )
