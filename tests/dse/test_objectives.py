from __future__ import annotations

import pytest
from optuna.study import StudyDirection

from dse import OBJECTIVES, AccuracyMetric, AccuracySettings, StudySettings
from robustdice_core import FailureAccuracy, InvalidParameterError, UnknownNameError

ACCURACY = FailureAccuracy(
    num_devices=3,
    failure_sets=((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)),
    accuracy=(0.9, 0.5, 0.7, 0.8, 0.1, 0.2, 0.3),
)


def test_worst_and_mean_over_the_chosen_failure_counts() -> None:
    assert AccuracySettings(AccuracyMetric.worst, (1,)).aggregate(ACCURACY) == 0.5
    assert AccuracySettings(AccuracyMetric.mean, (1,)).aggregate(ACCURACY) == pytest.approx(2 / 3)
    assert AccuracySettings(AccuracyMetric.worst, (1, 2)).aggregate(ACCURACY) == 0.1


def test_expected_accuracy_uses_every_failure_set() -> None:
    p = 0.2
    expected = 0.8**3 * 0.9 + p * 0.8**2 * (0.5 + 0.7 + 0.8) + p**2 * 0.8 * (0.1 + 0.2 + 0.3)
    settings = AccuracySettings(AccuracyMetric.expected, (1,), fail_prob=p)
    assert settings.aggregate(ACCURACY) == pytest.approx(expected)
    study = StudySettings(devices=3, acc_metric="expected", fail_prob=p)
    assert study.failure_sizes() == [0, 1, 2]


def test_failure_sizes_are_checked_and_include_no_failure() -> None:
    assert StudySettings(failures=(2,)).failure_sizes() == [0, 2]
    with pytest.raises(InvalidParameterError, match="--failures"):
        StudySettings(failures=(4,))


def test_objectives_and_metrics_are_parsed_once_into_registry_keys_and_enums() -> None:
    settings = StudySettings.parse(objectives="acc, mem,fps", acc_metric="mean")
    assert settings.objectives == ("acc", "mem", "fps")
    assert settings.acc_metric is AccuracyMetric.mean
    assert [o.name for o in settings.objective_specs] == ["acc", "mem", "fps"]
    with pytest.raises(UnknownNameError, match="`--objectives`: unknown objective `speed`"):
        StudySettings.parse(objectives="acc,speed")
    with pytest.raises(InvalidParameterError, match="twice"):
        StudySettings.parse(objectives="acc,acc")
    with pytest.raises(InvalidParameterError, match="at least one objective"):
        StudySettings.parse(objectives="")
    with pytest.raises(InvalidParameterError, match="worst, mean, expected"):
        StudySettings.parse(acc_metric="median")


def test_objective_registry_has_typed_directions() -> None:
    assert set(OBJECTIVES.names()) == {"acc", "mem", "energy", "fps", "latency"}
    directions = {name: OBJECTIVES.get(name).direction for name in OBJECTIVES.names()}
    assert all(isinstance(d, StudyDirection) for d in directions.values())
    assert directions["acc"] is StudyDirection.MAXIMIZE
    assert directions["mem"] is StudyDirection.MINIMIZE
