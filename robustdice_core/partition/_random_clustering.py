"""Random clustering: Algorithm 1's cluster sizes with importance ignored (a control).

The clusters are cut exactly as `RobustDiCE` cuts them (same points, thresholds and step-2
strategy), then the neurons are shuffled over them: every cluster keeps its size, its members
are random, and the replicas cycle from a random member. Padding and round-robin dealing are
Algorithm 1's (`deal_clusters`), so the replication factor and the per-device counts equal
RobustDiCE's at the same thresholds; only the use of importance differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustdice_core.partition._clustering import Clustering
from robustdice_core.partition._partition import Partition
from robustdice_core.partition._robustdice import RobustDiCE, deal_clusters

__all__ = ["RandomClustering"]


class RandomClustering(RobustDiCE):
    """RobustDiCE's cluster sizes, random members (seeded).

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (used only for the cluster sizes).
        thresholds: one threshold per unit, or one for all (as for `RobustDiCE`).
        clustering: the step-2 strategy whose cluster sizes are kept.
        seed: seeds the shuffle; the same seed gives the same partition.
    """

    name = "random-clustering"
    label = "Random clustering"

    def __init__(
        self,
        points: Sequence[np.ndarray],
        thresholds: Sequence[float] | float = 0.0,
        *,
        clustering: Clustering | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(points, thresholds, clustering=clustering)
        self.seed = seed

    def partition_for(
        self,
        thresholds: Sequence[float] | float,
        num_devices: int,
        *,
        unit_sizes: Sequence[int] | None = None,
    ) -> Partition:
        """Shuffled clusters at ``thresholds`` (validated as `RobustDiCE.partition_for`)."""
        reference = super().partition_for(thresholds, num_devices, unit_sizes=unit_sizes)
        rng = np.random.default_rng(self.seed)
        per_device = []
        for unit, t in zip(self._units, reference.thresholds, strict=True):
            shuffled = rng.permutation(unit.cluster_ids(t))  # same sizes, random members
            per_device.append(deal_clusters(shuffled, rng.random(shuffled.size), num_devices))
        return Partition.from_arrays(
            self.name,
            reference.unit_sizes,
            per_device,
            thresholds=reference.thresholds,
            options={"clustering": self.clustering.name, "seed": str(self.seed)},
        )
