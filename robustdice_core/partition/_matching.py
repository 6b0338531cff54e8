"""Thresholds that give a target replication factor: comparing methods at equal memory.

RobustDiCE's thresholds are searched on one global scale ``s`` in [0, 1] applied to the
per-unit one-cluster thresholds (`RobustDiCE.one_cluster_thresholds`): ``t_i = s * h_i``.
``s = 0`` leaves every neuron alone (replication ND), ``s = 1`` gives one cluster per unit
(replication 1 plus padding). Scaling the one-cluster thresholds rather than using one global
threshold keeps every unit at the same relative position in its own range.

The factor is a step function of ``s`` (non-increasing for the dendrogram clustering, whose
cuts are nested: merging clusters never adds padding). Bisection keeps ``RF(lo) >= target >
RF(hi)`` until ``hi - lo <= SCALE_TOLERANCE`` (at most `MAX_BISECTIONS` halvings) and returns
the side of the final step closer to the target (ties: the side at or above it). The
achieved factor differs from the target by at most half the height of that step; on the
embedded digits models typically < 0.01. Greedy clustering is not monotone in ``s``; the
bisection still ends at a step of the factor and reports what it achieved.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._partition import Partition
from robustdice_core.partition._robustdice import RobustDiCE

__all__ = [
    "MAX_BISECTIONS",
    "SCALE_TOLERANCE",
    "MatchedThresholds",
    "check_replication_target",
    "match_replication",
]

SCALE_TOLERANCE = 1e-7
MAX_BISECTIONS = 40


@dataclass(frozen=True)
class MatchedThresholds:
    """The thresholds found for a target replication factor, and their partition."""

    target: float
    scale: float
    thresholds: tuple[float, ...]
    partition: Partition

    @property
    def achieved(self) -> float:
        return self.partition.replication_factor

    @property
    def error(self) -> float:
        """Achieved minus target replication factor."""
        return self.achieved - self.target


def check_replication_target(target: float, num_devices: int) -> None:
    if not 1.0 <= target <= num_devices:
        raise InvalidParameterError(
            f"`--replication` must be in [1, {num_devices}] for {num_devices} devices "
            f"(1 = no copies, {num_devices} = every device computes everything), got {target}."
        )


def match_replication(
    partitioner: RobustDiCE, target: float, num_devices: int
) -> MatchedThresholds:
    """The thresholds ``s * one_cluster_thresholds`` whose replication factor is closest to
    ``target`` (see the module docstring for the search and its tolerance)."""
    check_replication_target(target, num_devices)
    high = partitioner.one_cluster_thresholds

    def at(scale: float) -> MatchedThresholds:
        thresholds = tuple(scale * h for h in high)
        partition = partitioner.partition_for(thresholds, num_devices)
        return MatchedThresholds(target, scale, thresholds, partition)

    lo, hi = at(0.0), at(1.0)
    if hi.achieved >= target:
        return hi  # even one cluster per unit replicates this much (padding)
    if lo.achieved <= target:
        return lo
    for _ in range(MAX_BISECTIONS):
        if hi.scale - lo.scale <= SCALE_TOLERANCE:
            break
        mid = at((lo.scale + hi.scale) / 2)
        if mid.achieved >= target:
            lo = mid
        else:
            hi = mid
    return lo if lo.achieved - target <= target - hi.achieved else hi
