"""Objectives (what a trial is judged on) and accuracy aggregation, as registries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from robustdice_core import FailureAccuracy, InvalidParameterError, Registry, parse_enum
from robustdice_core.costs import CostEstimate

__all__ = [
    "OBJECTIVES",
    "AccuracyMetric",
    "AccuracySettings",
    "Objective",
    "TrialOutcome",
    "parse_acc_metric",
    "parse_objectives",
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

    def failure_sizes(self, num_devices: int) -> list[int]:
        """The failure-set sizes to evaluate (no-failure always included, for reporting)."""
        if not self.failures or any(not 1 <= k < num_devices for k in self.failures):
            raise InvalidParameterError(
                f"`--failures` values must be in 1..{num_devices - 1} for {num_devices} "
                f"devices, got {list(self.failures)}."
            )
        if self.metric is AccuracyMetric.expected:
            return list(range(num_devices))
        return sorted({0, *self.failures})

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
    direction: str  # "maximize" or "minimize"
    label: str  # with unit, for tables
    needs_accuracy: bool
    value: Callable[[TrialOutcome, AccuracySettings], float]


OBJECTIVES: Registry[Objective] = Registry("objective")


def _accuracy(outcome: TrialOutcome, settings: AccuracySettings) -> float:
    assert outcome.accuracy is not None
    return 100.0 * settings.aggregate(outcome.accuracy)


for _objective in (
    Objective("acc", "maximize", "Top-1 %", True, _accuracy),
    Objective("mem", "minimize", "max mem MB", False, lambda o, _: o.costs.max_memory_mb),
    Objective("energy", "minimize", "max J/img", False, lambda o, _: o.costs.max_energy_j),
    Objective("fps", "maximize", "FPS", False, lambda o, _: o.costs.fps),
    Objective("latency", "minimize", "latency ms", False, lambda o, _: 1e3 * o.costs.latency_s),
):
    OBJECTIVES.add(_objective.name, _objective)


def parse_objectives(text: str | Sequence[str]) -> tuple[Objective, ...]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InvalidParameterError("`--objectives` must name at least one objective.")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"`--objectives` lists one twice: {','.join(names)}.")
    return tuple(OBJECTIVES.get(n) for n in names)


def parse_acc_metric(name: str) -> AccuracyMetric:
    return parse_enum(AccuracyMetric, name, "--acc-metric")
