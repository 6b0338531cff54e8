"""Partitioners: RobustDiCE (Algorithm 1) and the baselines, all producing a `Partition`."""

from __future__ import annotations

from robustdice_core._registry import Registry
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._baselines import CDC, LOP, FullReplication
from robustdice_core.partition._budgeted import Budgeted, budget_fractions, deal_budgeted
from robustdice_core.partition._clustering import (
    Clustering,
    DendrogramClustering,
    GreedyClustering,
    PreparedUnit,
)
from robustdice_core.partition._graded import Graded, graded_copies, graded_levels
from robustdice_core.partition._matching import (
    MatchedThresholds,
    check_replication_target,
    match_replication,
)
from robustdice_core.partition._partition import Partition, Recovery
from robustdice_core.partition._random_clustering import RandomClustering
from robustdice_core.partition._random_copies import LOPRandomCopies
from robustdice_core.partition._robustdice import RobustDiCE, deal_clusters
from robustdice_core.partition._tiered import DEFAULT_SHARES, Tiered, TierSplit, deal_tiered

# Every method, RobustDiCE beside the baselines it is compared with (DESIGN 3.4).
PARTITIONERS: Registry[type[Partitioner]] = Registry("partitioner")
# The ones that need no importance scores: constructed with no arguments.
BASELINES: Registry[type[Partitioner]] = Registry("baseline partitioner")
for _baseline in (LOP, FullReplication, CDC):
    BASELINES.add(_baseline.name, _baseline)
# Importance-blind controls and the budgeted allocator (docs/per_byte.md) take arguments.
for _method in (
    RobustDiCE,
    LOP,
    FullReplication,
    CDC,
    Budgeted,
    Tiered,
    Graded,
    RandomClustering,
    LOPRandomCopies,
):
    PARTITIONERS.add(_method.name, _method)

CLUSTERINGS: Registry[type[Clustering]] = Registry("clustering")
for _clustering in (DendrogramClustering, GreedyClustering):
    CLUSTERINGS.add(_clustering.name, _clustering)

__all__ = [
    "BASELINES",
    "Budgeted",
    "CDC",
    "CLUSTERINGS",
    "DEFAULT_SHARES",
    "Clustering",
    "DendrogramClustering",
    "FullReplication",
    "Graded",
    "GreedyClustering",
    "LOP",
    "LOPRandomCopies",
    "MatchedThresholds",
    "PARTITIONERS",
    "Partition",
    "Partitioner",
    "PreparedUnit",
    "RandomClustering",
    "Recovery",
    "RobustDiCE",
    "TierSplit",
    "Tiered",
    "budget_fractions",
    "check_replication_target",
    "deal_budgeted",
    "deal_clusters",
    "deal_tiered",
    "graded_copies",
    "graded_levels",
    "match_replication",
]
