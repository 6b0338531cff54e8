"""Threshold scales: how a searched value becomes a unit's RobustDiCE threshold.

- ``linear`` (the default, and every study stored before scales existed): the parameter *is*
  the threshold, searched from 0 to the unit's one-cluster threshold h. In a large unit most
  of that range merges nearly everything: its nearest neighbours are far closer than h, so
  uniformly sampled thresholds almost never replicate it (docs/dse.md, "Threshold scale").
- ``quantile``: the parameter u in [0, 1] is a place among the unit's complete-linkage merge
  heights m_1 <= ... <= m_{n-1}: the threshold interpolates linearly between the knots
  (k / (n - 1), just above m_k), with 0 at u = 0 and the one-cluster threshold at u = 1. Cut
  by the dendrogram clustering, the unit then has about n - u (n - 1) clusters: the number of
  clusters, and so the replication, falls evenly over u in every unit, whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import linkage

from robustdice_core import Partition, Registry
from robustdice_core.partition import RobustDiCE

__all__ = ["DEFAULT_SCALE", "THRESHOLD_SCALES", "QuantileThresholds", "ScaledRobustDiCE"]

DEFAULT_SCALE = "linear"  # stored only when another scale is chosen: old keys hold


@dataclass(frozen=True)
class ScaledRobustDiCE:
    """RobustDiCE searched on another scale: ``partition_for`` maps the per-unit values to
    thresholds first (`QuantileThresholds.thresholds`)."""

    robustdice: RobustDiCE
    scale: QuantileThresholds

    def partition_for(self, values: Sequence[float], num_devices: int, /) -> Partition:
        return self.robustdice.partition_for(self.scale.thresholds(values), num_devices)


class QuantileThresholds:
    """Per unit, the knots of the quantile scale (module docstring).

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (as `RobustDiCE` takes them).
    """

    def __init__(self, points: Sequence[np.ndarray]) -> None:
        self.knots: list[np.ndarray] = [_knots(np.asarray(p, dtype=np.float64)) for p in points]

    def thresholds(self, values: Sequence[float]) -> list[float]:
        """Per-unit thresholds from per-unit values in [0, 1] (clipped to it)."""
        if len(values) != len(self.knots):
            raise ValueError(f"`values` must have {len(self.knots)} entries, got {len(values)}.")
        return [
            _interpolate(knots, min(max(float(u), 0.0), 1.0))
            for knots, u in zip(self.knots, values, strict=True)
        ]


def _knots(points: np.ndarray) -> np.ndarray:
    """0, then every merge height just above itself (cuts are strict), in increasing order."""
    if points.shape[0] < 2:
        return np.zeros(1)
    heights = np.sort(linkage(points, method="complete")[:, 2])
    return np.concatenate([[0.0], np.nextafter(heights, np.inf)])


def _interpolate(knots: np.ndarray, u: float) -> float:
    if knots.size == 1:
        return 0.0
    position = u * (knots.size - 1)
    if abs(position - round(position)) < 1e-9:  # k / (n - 1) is knot k, whatever the rounding
        return float(knots[round(position)])
    below = min(int(position), knots.size - 2)
    return float(knots[below] + (position - below) * (knots[below + 1] - knots[below]))


# A scale: (the RobustDiCE partitioner, the points it was built on) -> (what the search
# calls, the per-unit upper end of the searched value).
ThresholdScale = Callable[
    [RobustDiCE, Sequence[np.ndarray]], tuple["RobustDiCE | ScaledRobustDiCE", list[float]]
]
THRESHOLD_SCALES: Registry[ThresholdScale] = Registry("threshold scale")


@THRESHOLD_SCALES.register("linear")
def _linear(
    robustdice: RobustDiCE, points: Sequence[np.ndarray]
) -> tuple[RobustDiCE | ScaledRobustDiCE, list[float]]:
    return robustdice, robustdice.one_cluster_thresholds


@THRESHOLD_SCALES.register("quantile")
def _quantile(
    robustdice: RobustDiCE, points: Sequence[np.ndarray]
) -> tuple[RobustDiCE | ScaledRobustDiCE, list[float]]:
    return ScaledRobustDiCE(robustdice, QuantileThresholds(points)), [1.0] * len(points)
