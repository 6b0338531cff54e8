from __future__ import annotations

import pytest

from dse._objectives import (
    OBJECTIVES,
    AccuracyMetric,
    AccuracySettings,
    parse_acc_metric,
    parse_objectives,
)
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
    assert settings.failure_sizes(3) == [0, 1, 2]


def test_failure_sizes_are_checked_and_include_no_failure() -> None:
    assert AccuracySettings(AccuracyMetric.worst, (2,)).failure_sizes(4) == [0, 2]
    with pytest.raises(InvalidParameterError, match="--failures"):
        AccuracySettings(AccuracyMetric.worst, (4,)).failure_sizes(4)


def test_parsing_objectives_and_metrics() -> None:
    assert [o.name for o in parse_objectives("acc, mem,fps")] == ["acc", "mem", "fps"]
    with pytest.raises(UnknownNameError, match="choose one of"):
        parse_objectives("acc,speed")
    with pytest.raises(InvalidParameterError, match="twice"):
        parse_objectives("acc,acc")
    with pytest.raises(InvalidParameterError):
        parse_objectives("")
    with pytest.raises(InvalidParameterError, match="worst, mean, expected"):
        parse_acc_metric("median")
    assert {o.name for o in OBJECTIVES.names() and map(OBJECTIVES.get, OBJECTIVES.names())} == {
        "acc",
        "mem",
        "energy",
        "fps",
        "latency",
    }
