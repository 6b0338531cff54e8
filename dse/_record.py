"""What a study keeps with each trial beyond Optuna's own record: one type, one set of keys.

Optuna records a trial's parameters, objective values and constraints (``trial.constraints``,
written by `record_constraints`); `TrialRecord` holds the rest (replication factor, per-device
figures, Top-1 % per failure set, timings) as JSON-able user attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from robustdice_core.costs import MB

if TYPE_CHECKING:
    from dse._problem import Evaluation

__all__ = [
    "FAIL_REASON_ATTR",
    "METHOD_ATTR",
    "RACE_ATTR",
    "RETRY_OF_ATTR",
    "RaceRecord",
    "TrialRecord",
    "failure_set_label",
    "is_feasible",
    "named_constraints",
    "record_constraints",
]

RETRY_OF_ATTR = "retry_of"  # on a re-queued trial: the number of the trial it repeats
FAIL_REASON_ATTR = "fail_reason"  # on a failed trial: the one-line error
RACE_ATTR = "race"  # on a trial of a racing study: `RaceRecord.to_dict`
METHOD_ATTR = "method"  # the partitioner a trial ran (`--method both` mixes them)
_KEYS = ("replication_factor", "latency_ms", "provenance", "devices", "seconds", "top1_pct")
# Optuna's pre-5 record of constraints, a list (`_CONSTRAINTS_KEY` in
# `optuna.study._constrained_optimization`): the only one optuna-dashboard (0.21) reads.
_CONSTRAINT_LIST_KEY = "constraints"


@dataclass(frozen=True)
class RaceRecord:
    """How a raced trial's accuracy was obtained.

    Attributes:
        raced_out: True when only the subset was evaluated; ``acc`` is then its estimate.
        subset: test images in the racing subset.
        test_images: test images in all.
        acc_upper: the optimistic ``acc`` value the decision was taken on.
    """

    raced_out: bool
    subset: int
    test_images: int
    acc_upper: float

    @property
    def images(self) -> int:
        """The images the trial's accuracy is measured on."""
        return self.subset if self.raced_out else self.test_images

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RaceRecord:
        return cls(
            bool(data["raced_out"]),
            int(data["subset"]),
            int(data["test_images"]),
            float(data["acc_upper"]),
        )


@dataclass(frozen=True)
class TrialRecord:
    """Per trial: what the objective values were computed from.

    ``devices`` has one mapping per device (``memory_mb`` in all, ``partition_mb`` of it for
    the partition's weights and activations, ``weight_mb``, ``energy_j``, ``gflops``,
    ``mb_tx``); ``top1_pct`` maps a failure set label (`failure_set_label`: ``"no failure"``,
    ``"failed 0"``, ``"failed 1+3"``) to Top-1 accuracy in percent, the objective's unit.
    ``race`` is set on the trials of a study with `--racing`: with ``raced_out``, the ``acc``
    value and ``top1_pct`` are estimates from the racing subset only.
    """

    replication_factor: float
    latency_ms: float
    provenance: str
    devices: tuple[Mapping[str, float], ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)
    top1_pct: Mapping[str, float] = field(default_factory=dict)
    unit_replication: tuple[float, ...] = ()  # per unit: copies computed / neurons
    race: RaceRecord | None = None
    method: str | None = None  # the partitioner that ran (`Partition.method`); None: older

    @property
    def raced_out(self) -> bool:
        """Only the racing subset was evaluated: the accuracy figures are its estimates."""
        return self.race is not None and self.race.raced_out

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation) -> TrialRecord:
        outcome = evaluation.outcome
        return cls(
            replication_factor=outcome.replication_factor,
            latency_ms=1e3 * outcome.costs.latency_s,
            provenance=outcome.costs.provenance.value,
            devices=tuple(
                {
                    "memory_mb": d.memory_bytes / MB,
                    "partition_mb": d.partition_bytes / MB,
                    "weight_mb": d.weight_bytes / MB,
                    "energy_j": d.energy_j,
                    "gflops": d.flops / 1e9,
                    "mb_tx": d.bytes_tx / MB,
                }
                for d in outcome.costs.per_device
            ),
            seconds=dict(evaluation.seconds),
            top1_pct=_top1_pct(evaluation),
            unit_replication=evaluation.partition.unit_replication,
            race=evaluation.race,
            method=evaluation.partition.method,
        )

    def to_user_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "replication_factor": self.replication_factor,
            "latency_ms": self.latency_ms,
            "provenance": self.provenance,
            "devices": [dict(d) for d in self.devices],
            "seconds": dict(self.seconds),
        }
        if self.top1_pct:
            attrs["top1_pct"] = dict(self.top1_pct)
        if self.unit_replication:
            attrs["unit_replication"] = list(self.unit_replication)
        if self.race is not None:
            attrs[RACE_ATTR] = self.race.to_dict()
        if self.method is not None:
            attrs[METHOD_ATTR] = self.method
        return attrs

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord | None:
        """The record of a trial that has one (a completed trial), else None."""
        return cls.from_user_attrs(trial.user_attrs)

    @classmethod
    def from_user_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord | None:
        """The record in ``attrs`` (`to_user_attrs`), else None.

        Per-failure-set accuracy is read only from ``top1_pct``: a record written before it
        (fractions under ``accuracy``) is never taken for percent.
        """
        if not all(key in attrs for key in _KEYS[:3]):
            return None
        return cls(
            replication_factor=float(attrs["replication_factor"]),
            latency_ms=float(attrs["latency_ms"]),
            provenance=str(attrs["provenance"]),
            devices=tuple(attrs.get("devices", ())),
            seconds=dict(attrs.get("seconds", {})),
            top1_pct=dict(attrs.get("top1_pct", {})),
            unit_replication=tuple(float(r) for r in attrs.get("unit_replication", ())),
            race=RaceRecord.from_dict(attrs[RACE_ATTR]) if RACE_ATTR in attrs else None,
            method=str(attrs[METHOD_ATTR]) if METHOD_ATTR in attrs else None,
        )


def _top1_pct(evaluation: Evaluation) -> dict[str, float]:
    accuracy = evaluation.outcome.accuracy
    if accuracy is None:
        return {}
    pairs = zip(accuracy.failure_sets, accuracy.accuracy, strict=True)
    return {failure_set_label(failed): 100.0 * float(a) for failed, a in pairs}


def failure_set_label(failed: Sequence[int]) -> str:
    """``"no failure"``, ``"failed 0"``, ``"failed 1+3"``: the devices down, never a bare
    number that reads as a count."""
    return f"failed {'+'.join(str(d) for d in failed)}" if failed else "no failure"


def is_feasible(trial: FrozenTrial) -> bool:
    """A completed trial whose every recorded constraint is met (<= 0).

    A failed, pruned or running trial is never feasible: it has no constraint values to
    meet, and no objective values either.
    """
    if trial.state != TrialState.COMPLETE:
        return False
    return all(value <= 0 for value in trial.constraints.values())


def record_constraints(trial: optuna.Trial, values: Sequence[float]) -> None:
    """Record a trial's constraint values (<= 0 is met), in the order of
    `StudySettings.constraint_names`, as the list under ``system_attrs["constraints"]``.

    That list is the one record every reader shares: Optuna 5 (``trial.constraints``, keyed
    ``"0"``, ``"1"``, ... and every sampler) and optuna-dashboard, which reads nothing else.
    Writing Optuna 5's named form as well would make Optuna see each constraint twice (and
    GPSampler model it twice); names come from the study's settings (`named_constraints`).
    """
    if values:
        # No public API writes a trial's system attributes; this is what Optuna's own
        # `constraints_func` handling does (`samplers._base._process_constraints_after_trial`).
        trial.storage.set_trial_system_attr(
            trial._trial_id, _CONSTRAINT_LIST_KEY, [float(v) for v in values]
        )


def named_constraints(trial: FrozenTrial, names: Sequence[str] | None) -> dict[str, float]:
    """The trial's recorded constraints by name (``names``: the study's constraint names,
    `StudySettings.constraint_names`); by position (``"0"``, ...) when names is None."""
    recorded = trial.constraints
    if names is None:
        return {key: float(value) for key, value in recorded.items()}
    return {name: float(recorded[str(i)]) for i, name in enumerate(names) if str(i) in recorded}
