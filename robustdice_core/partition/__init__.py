"""Partitioners: RobustDiCE (Algorithm 1) and the baselines, all producing a `Partition`."""

from __future__ import annotations

from robustdice_core._registry import Registry
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._baselines import CDC, LOP, FullReplication
from robustdice_core.partition._clustering import (
    Clustering,
    DendrogramClustering,
    GreedyClustering,
    PreparedUnit,
)
from robustdice_core.partition._partition import Partition, Recovery
from robustdice_core.partition._robustdice import RobustDiCE, deal_clusters

BASELINES: Registry[type[Partitioner]] = Registry("baseline partitioner")
for _cls in (LOP, FullReplication, CDC):
    BASELINES.add(_cls.name, _cls)

CLUSTERINGS: Registry[type[Clustering]] = Registry("clustering")
for _clustering in (DendrogramClustering, GreedyClustering):
    CLUSTERINGS.add(_clustering.name, _clustering)

__all__ = [
    "BASELINES",
    "CDC",
    "CLUSTERINGS",
    "Clustering",
    "DendrogramClustering",
    "FullReplication",
    "GreedyClustering",
    "LOP",
    "Partition",
    "Partitioner",
    "PreparedUnit",
    "Recovery",
    "RobustDiCE",
    "deal_clusters",
]
