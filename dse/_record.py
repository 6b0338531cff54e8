"""What a study keeps with each trial beyond Optuna's own record: one type, one set of keys.

Optuna records a trial's parameters, objective values and constraints (``trial.constraints``);
`TrialRecord` holds the rest (replication factor, per-device figures, accuracy per failure
set, timings) as JSON-able user attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from robustdice_core.costs import MB

if TYPE_CHECKING:
    from dse._problem import Evaluation

__all__ = ["RETRY_OF_ATTR", "TrialRecord", "is_feasible"]

RETRY_OF_ATTR = "retry_of"  # on a re-queued trial: the number of the trial it repeats
_KEYS = ("replication_factor", "latency_ms", "provenance", "devices", "seconds", "accuracy")


@dataclass(frozen=True)
class TrialRecord:
    """Per trial: what the objective values were computed from.

    ``devices`` has one mapping per device (``memory_mb`` in all, ``partition_mb`` of it for
    the partition's weights and activations, ``weight_mb``, ``energy_j``, ``gflops``,
    ``mb_tx``); ``accuracy`` maps a failure set label (``"none"``, ``"0"``, ``"1+3"``) to Top-1.
    """

    replication_factor: float
    latency_ms: float
    provenance: str
    devices: tuple[Mapping[str, float], ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)
    accuracy: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation) -> TrialRecord:
        outcome = evaluation.outcome
        accuracy = outcome.accuracy
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
            accuracy=(
                {}
                if accuracy is None
                else {
                    failure_set_label(f): a
                    for f, a in zip(accuracy.failure_sets, accuracy.accuracy, strict=True)
                }
            ),
        )

    def to_user_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "replication_factor": self.replication_factor,
            "latency_ms": self.latency_ms,
            "provenance": self.provenance,
            "devices": [dict(d) for d in self.devices],
            "seconds": dict(self.seconds),
        }
        if self.accuracy:
            attrs["accuracy"] = dict(self.accuracy)
        return attrs

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord | None:
        """The record of a trial that has one (a completed trial), else None."""
        attrs = trial.user_attrs
        if not all(key in attrs for key in _KEYS[:3]):
            return None
        return cls(
            replication_factor=float(attrs["replication_factor"]),
            latency_ms=float(attrs["latency_ms"]),
            provenance=str(attrs["provenance"]),
            devices=tuple(attrs.get("devices", ())),
            seconds=dict(attrs.get("seconds", {})),
            accuracy=dict(attrs.get("accuracy", {})),
        )


def failure_set_label(failed: Sequence[int]) -> str:
    return "+".join(str(d) for d in failed) if failed else "none"


def is_feasible(trial: FrozenTrial) -> bool:
    """Every constraint Optuna recorded for the trial is met (<= 0)."""
    return all(value <= 0 for value in trial.constraints.values())
