"""Objectives (what a trial is judged on) and accuracy aggregation, as registries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from optuna.study import StudyDirection

from robustdice_core import FailureAccuracy, Registry
from robustdice_core.costs import CostEstimate

__all__ = [
    "OBJECTIVES",
    "AccuracyMetric",
    "AccuracySettings",
    "Objective",
    "TrialOutcome",
]


class AccuracyMetric(str, Enum):
    """How accuracy over failure sets becomes one number."""

    worst = "worst"  # the paper's pessimistic view
    mean = "mean"
    expected = "expected"  # independent per-device failure probability p


@dataclass(frozen=True)
class AccuracySettings:
    metric: AccuracyMetric = AccuracyMetric.worst
    failures: tuple[int, ...] = (1,)  # numbers of failed devices considered
    fail_prob: float = 0.1

    def aggregate(self, accuracy: FailureAccuracy) -> float:
        if self.metric is AccuracyMetric.expected:
            return accuracy.expected(self.fail_prob)
        values = [
            a
            for f, a in zip(accuracy.failure_sets, accuracy.accuracy, strict=True)
            if len(f) in self.failures
        ]
        return float(min(values) if self.metric is AccuracyMetric.worst else np.mean(values))


@dataclass(frozen=True)
class TrialOutcome:
    """Everything one evaluated partition yields."""

    costs: CostEstimate
    accuracy: FailureAccuracy | None
    replication_factor: float


@dataclass(frozen=True)
class Objective:
    name: str
    direction: StudyDirection
    label: str  # with unit, for tables
    needs_accuracy: bool
    value: Callable[[TrialOutcome, AccuracySettings], float]

    @property
    def maximize(self) -> bool:
        return self.direction is StudyDirection.MAXIMIZE


OBJECTIVES: Registry[Objective] = Registry("objective")


def _accuracy(outcome: TrialOutcome, settings: AccuracySettings) -> float:
    assert outcome.accuracy is not None
    return 100.0 * settings.aggregate(outcome.accuracy)


def _partition_memory(outcome: TrialOutcome, _: AccuracySettings) -> float:
    """The partition's own weights and activations on the fullest device. The device
    profile's runtime constant is the same for every partition, so it is left out of the
    objective (it would hide the differences) but counted by `--max-mem-mb`."""
    return outcome.costs.max_partition_memory_mb


_MAX, _MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
for _objective in (
    Objective("acc", _MAX, "Top-1 %", True, _accuracy),
    Objective("mem", _MIN, "max MB/device", False, _partition_memory),
    Objective("energy", _MIN, "max J/img/device", False, lambda o, _: o.costs.max_energy_j),
    Objective("fps", _MAX, "FPS", False, lambda o, _: o.costs.fps),
    Objective("latency", _MIN, "latency ms", False, lambda o, _: 1e3 * o.costs.latency_s),
):
    OBJECTIVES.add(_objective.name, _objective)
