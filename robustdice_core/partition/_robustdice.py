"""RobustDiCE (Algorithm 1): importance-aware clustering + partial replication + round robin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._clustering import Clustering, DendrogramClustering, PreparedUnit
from robustdice_core.partition._partition import Partition

__all__ = ["RobustDiCE", "deal_clusters"]


def deal_clusters(
    labels: np.ndarray, importance: np.ndarray, num_devices: int
) -> list[np.ndarray]:
    """Step 3: pad every cluster to a multiple of ND with replicas and deal it round robin.

    Within a cluster, members are ordered most important first; position p of the padded
    cluster holds member ``p mod size`` and goes to device ``p mod ND``. Replicas thus cycle
    from the most important member, and no device receives the same neuron twice (for
    size >= ND the replica of member b lands on device (size + b) mod ND != b mod ND; for
    size < ND the ND positions are all on different devices).
    """
    # Sort neurons by (cluster, importance descending, index) in one lexsort.
    order = np.lexsort((np.arange(labels.size), -importance, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, labels.size])
    padded = -(-sizes // num_devices) * num_devices
    cluster_of_slot = np.repeat(np.arange(sizes.size), padded)
    slot_start = np.repeat(np.cumsum(padded) - padded, padded)
    position = np.arange(cluster_of_slot.size) - slot_start
    member = order[starts[cluster_of_slot] + position % sizes[cluster_of_slot]]
    device = position % num_devices
    return [np.sort(member[device == d]) for d in range(num_devices)]


class RobustDiCE(Partitioner):
    """Partitions units by clustering their normalised importance scores.

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (each column in [0, 1]).
        thresholds: one threshold per unit, or one for all.
        clustering: the step-2 strategy; the dendrogram variant by default.
    """

    name = "robustdice"
    label = "RobustDiCE"

    def __init__(
        self,
        points: Sequence[np.ndarray],
        thresholds: Sequence[float] | float = 0.0,
        *,
        clustering: Clustering | None = None,
    ) -> None:
        self.clustering = clustering or DendrogramClustering()
        arrays = [_checked_points(i, p) for i, p in enumerate(points)]
        self._units: list[PreparedUnit] = [self.clustering.prepare(p) for p in arrays]
        self._importance = [p.sum(axis=1) for p in arrays]
        self.thresholds = self._expand(thresholds)

    @property
    def diameters(self) -> list[float]:
        """Per unit, the largest pairwise distance; thresholds *above* it give one cluster
        (at the diameter itself the farthest pair stays apart: the comparison is strict)."""
        return [u.diameter for u in self._units]

    @property
    def one_cluster_thresholds(self) -> list[float]:
        """Per unit, the smallest threshold that gives one cluster (the float just above the
        diameter, 0 for a single neuron): the natural upper bound of a threshold search."""
        return [u.one_cluster_threshold for u in self._units]

    def _expand(self, thresholds: Sequence[float] | float) -> tuple[float, ...]:
        if isinstance(thresholds, (int, float)):
            values = [float(thresholds)] * len(self._units)
        else:
            values = [float(t) for t in thresholds]
        if len(values) != len(self._units):
            raise InvalidParameterError(
                f"`thresholds` has {len(values)} values but the model has {len(self._units)} "
                "units; give one per unit or a single value."
            )
        for i, t in enumerate(values):
            if not 0.0 <= t < float("inf"):
                raise InvalidParameterError(
                    f"threshold of unit {i} must be a finite number >= 0, got {t!r}."
                )
        return tuple(values)

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        return self.partition_for(self.thresholds, num_devices, unit_sizes=unit_sizes)

    def partition_for(
        self,
        thresholds: Sequence[float] | float,
        num_devices: int,
        *,
        unit_sizes: Sequence[int] | None = None,
    ) -> Partition:
        """Partition at another threshold vector, reusing the prepared clustering; validated
        as `partition` is (`check_request`)."""
        values = self._expand(thresholds)
        sizes = [u.size for u in self._units]
        if unit_sizes is not None and list(unit_sizes) != sizes:
            raise InvalidParameterError(_size_mismatch(list(unit_sizes), sizes))
        self.check_request(sizes, num_devices)
        per_device = [
            deal_clusters(unit.cluster_ids(t), importance, num_devices)
            for unit, importance, t in zip(self._units, self._importance, values, strict=True)
        ]
        return Partition.from_arrays(
            self.name,
            sizes,
            per_device,
            thresholds=values,
            options={"clustering": self.clustering.name},
        )


def _checked_points(unit: int, points: np.ndarray) -> np.ndarray:
    """``points`` as a float64 ``[n, d]`` array of finite values, else a clear error."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2:
        raise InvalidParameterError(
            f"`points` of unit {unit} must be a 2-D [neurons, scores] array, got shape "
            f"{array.shape}."
        )
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        j, k = (int(v) for v in bad[0])
        raise InvalidParameterError(
            f"`points` of unit {unit} must be finite, got {array[j, k]} at neuron {j}, score "
            f"column {k}; check the importance scores (`ImportanceScores.points` rejects them)."
        )
    return array


def _size_mismatch(given: list[int], scored: list[int]) -> str:
    if len(given) != len(scored):
        where = f"{len(given)} units given, {len(scored)} scored"
    else:
        i = next(i for i, (a, b) in enumerate(zip(given, scored, strict=True)) if a != b)
        where = f"unit {i}: {given[i]} given, {scored[i]} scored"
    return (
        f"`unit_sizes` must match the scored neurons per unit ({where}); pass the sizes of "
        "the units the scores were computed for."
    )
