"""Compare RobustDiCE with the baselines on accuracy under failures (the paper's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dse._problem import BASELINE_NAMES
from dse._workbench import Workbench
from robustdice_core.failures import FailureAccuracy, failure_sets
from robustdice_core.partition import BASELINES, Partition, Partitioner

__all__ = ["MethodResult", "compare_methods"]


@dataclass(frozen=True)
class MethodResult:
    name: str  # registry key
    label: str  # for tables
    partition: Partition
    accuracy: FailureAccuracy

    def to_dict(self, fail_prob: float) -> dict[str, object]:
        return {
            "method": self.name,
            "label": self.label,
            "replication_factor": self.partition.replication_factor,
            "thresholds": list(self.partition.thresholds),
            "by_failed_devices": [vars(self.accuracy.by_size(k)) for k in self.accuracy.sizes()],
            "expected_accuracy": self.accuracy.expected(fail_prob),
            "fail_prob": fail_prob,
        }


def compare_methods(
    bench: Workbench,
    num_devices: int,
    thresholds: Sequence[float] | float,
    *,
    clustering: str = "dendrogram",
    baselines: Sequence[str] = BASELINE_NAMES,
) -> list[MethodResult]:
    """Evaluate RobustDiCE at ``thresholds`` and each baseline on every failure set."""
    sets = failure_sets(num_devices, range(num_devices))
    robustdice = bench.robustdice(clustering)
    partitions: list[tuple[Partitioner, Partition]] = [
        (robustdice, robustdice.partition_for(thresholds, num_devices))
    ]
    for name in baselines:
        partitioner = BASELINES.get(name)()
        partitions.append((partitioner, partitioner.partition(bench.unit_sizes, num_devices)))
    evaluator = bench.require_evaluator()
    return [
        MethodResult(p.name, p.label, partition, evaluator.evaluate(partition, sets))
        for p, partition in partitions
    ]
