"""`dse optimize --method both`: one study whose trials use either search method."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from dse import (
    RobustnessProblem,
    StudySettings,
    TrialRecord,
    prepare_study,
    run_study,
    trials_frame,
)
from dse._deploy import deploy
from dse._pareto import ReferenceBox
from dse._samplers import SAMPLERS
from dse._space import METHOD_CHOICES, SEARCH_METHODS, SWITCH
from dse._study import BOX_ATTR, open_storage
from robustdice_core import UnknownNameError

STUDY = "both"
BASE = StudySettings(
    model="digits-vgg-bn", objectives=("acc", "mem"), method="both", test_size=40, tie="type"
)


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(BASE)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, problem: RobustnessProblem) -> str:
    """A finished mixed study: its 4 enqueued extremes (2 per method), then 4 sampled."""
    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'studies.db'}"
    settings = BASE.replace(sampler="random")
    with prepare_study(settings, storage_url=url, study_name=STUDY, problem=problem) as prepared:
        run_study(prepared, trials=8)
    return url


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=open_storage(storage))


def test_every_search_method_is_a_choice_and_both_mixes_them() -> None:
    for name in SEARCH_METHODS.names():
        assert METHOD_CHOICES.get(name) == (name,)
    assert METHOD_CHOICES.get("both") == ("robustdice", "budgeted")


def test_the_space_has_the_switch_first_then_every_methods_parameters(
    problem: RobustnessProblem,
) -> None:
    search = problem.search
    assert [m.name for m in search.methods] == ["robustdice", "budgeted"]
    assert search.names[0] == SWITCH and (search.low[0], search.high[0]) == (0.0, 1.0)
    own = [n for m in search.methods for n in m.space.names]
    assert list(search.names[1:]) == own
    assert {n[:2] for n in own} == {"t:", "f:"}
    stored = search.to_dict()
    assert stored["names"] == list(search.names)
    names, methods, unit_param = stored["names"], stored["methods"], stored["unit_param"]
    assert isinstance(names, list) and isinstance(methods, dict) and isinstance(unit_param, list)
    assert set(methods) == {"robustdice", "budgeted"}
    unit_names = [names[p] for p in unit_param]
    assert all(n.startswith("t:") for n in unit_names)


@pytest.mark.parametrize(
    ("switch", "method"),
    [(0.0, "robustdice"), (0.4999, "robustdice"), (0.5, "budgeted"), (1.0, "budgeted")],
)
def test_the_switch_picks_the_method(
    problem: RobustnessProblem, switch: float, method: str
) -> None:
    params = dict(zip(problem.search.names, problem.search.low, strict=True))
    params[SWITCH] = switch
    assert problem.search.method_of(params).name == method
    assert problem.search.partition_for(params, 4).method == method


def test_the_extremes_are_both_ends_of_both_methods(problem: RobustnessProblem) -> None:
    points = problem.search.extremes()
    methods = [problem.search.method_of(p).name for p in points]
    assert methods == ["robustdice", "robustdice", "budgeted", "budgeted"]
    factors = [problem.search.partition_for(p, 4).replication_factor for p in points]
    assert factors[0] == 4.0  # t = 0: every neuron on every device
    assert factors[2] == 1.0  # nothing protected
    assert factors[3] == 2.0  # everything protected with k + 1 = 2 copies
    assert factors[1] < 1.2  # one cluster per unit: padding only


def test_a_mixed_study_runs_both_methods_and_records_which(storage: str) -> None:
    study = load(storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 8
    methods = {TrialRecord.from_trial(t).method for t in done}  # type: ignore[union-attr]
    assert methods == {"robustdice", "budgeted"}
    frame = trials_frame(study, _box(storage))
    assert set(frame["partitioner"]) == {"robustdice", "budgeted"}
    assert SWITCH in frame.columns


def _box(storage: str) -> ReferenceBox:
    return ReferenceBox.from_dict(load(storage).user_attrs[BOX_ATTR])


def test_every_trial_rebuilds_its_partition(storage: str, problem: RobustnessProblem) -> None:
    for trial in load(storage).trials:
        record = TrialRecord.from_trial(trial)
        assert record is not None
        partition = problem.search.partition_for(trial.params, BASE.devices)
        assert partition.method == record.method
        assert partition.replication_factor == pytest.approx(record.replication_factor)


def test_deploy_rebuilds_a_trial_of_each_method(
    storage: str, problem: RobustnessProblem, tmp_path: Path
) -> None:
    study = load(storage)
    for method in ("robustdice", "budgeted"):
        trial = next(
            t
            for t in study.trials[4:] + study.trials[:4]  # a sampled trial where there is one
            if TrialRecord.from_trial(t).method == method  # type: ignore[union-attr]
        )
        result = deploy(storage, STUDY, trial=trial.number, out=tmp_path / method, problem=problem)
        record = TrialRecord.from_trial(trial)
        assert result.manifest.origin.method == method
        assert result.manifest.partition.replication_factor == pytest.approx(
            record.replication_factor  # type: ignore[union-attr]
        )


def test_stored_settings_round_trip_and_name_a_new_study() -> None:
    stored = BASE.to_dict()
    assert stored["method"] == "both"
    assert StudySettings.from_dict(stored) == BASE
    single = BASE.replace(method="robustdice")
    assert "method" not in single.to_dict()  # as before methods existed: the same names
    assert single.default_study_name() != BASE.default_study_name()
    assert BASE.differences(single) == ["method"]


def test_unknown_methods_name_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="both, budgeted, graded, robustdice"):
        StudySettings(method="all")


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_searches_the_mixed_space(sampler: str, problem: RobustnessProblem) -> None:
    """The switch is a float: the space is fixed, so no sampler sees a conditional one."""
    settings = BASE.replace(objectives=("mem", "energy"), sampler=sampler, population=4)
    fast = RobustnessProblem(settings, bench=problem.bench)
    with prepare_study(settings, storage_url=":memory:", problem=fast) as prepared:
        result = run_study(prepared, trials=7)
    done = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 7
    assert all(set(t.params) == set(fast.search.names) for t in done)
    assert {TrialRecord.from_trial(t).method for t in done} == {  # type: ignore[union-attr]
        "robustdice",
        "budgeted",
    }
