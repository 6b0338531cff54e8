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

# Every method, RobustDiCE beside the baselines it is compared with (DESIGN 3.4).
PARTITIONERS: Registry[type[Partitioner]] = Registry("partitioner")
# The ones that need no importance scores: constructed with no arguments.
BASELINES: Registry[type[Partitioner]] = Registry("baseline partitioner")
for _baseline in (LOP, FullReplication, CDC):
    BASELINES.add(_baseline.name, _baseline)
for _method in (RobustDiCE, LOP, FullReplication, CDC):
    PARTITIONERS.add(_method.name, _method)

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
    "PARTITIONERS",
    "Partition",
    "Partitioner",
    "PreparedUnit",
    "Recovery",
    "RobustDiCE",
    "deal_clusters",
]
