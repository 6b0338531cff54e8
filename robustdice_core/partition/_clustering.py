"""Step 2 of Algorithm 1: cluster a unit's neurons so that no two neurons in a cluster are
``t`` or more apart (complete linkage) in the normalised importance-score space.

Two strategies with the same guarantee:

- `GreedyClustering`: the paper's procedure exactly as written (pivot groups absorb, in list
  order, every later group whose complete-linkage distance to them is below ``t``).
- `DendrogramClustering`: a complete-linkage dendrogram built once per unit (scipy) and cut
  just below ``t`` for every threshold, O(n) per cut.

Threshold semantics (DESIGN 3.3): the comparison is strict everywhere, as in the paper: every
cluster's largest pairwise distance is below ``t``, and a pair exactly ``t`` apart stays apart.
So ``t = 0`` leaves every neuron alone, ``t = diameter`` (the unit's largest pairwise distance)
still separates the farthest pair, and only ``t > diameter`` gives a single cluster; the
smallest such threshold is `PreparedUnit.one_cluster_threshold`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform

from robustdice_core._errors import InvalidParameterError

__all__ = ["Clustering", "PreparedUnit", "GreedyClustering", "DendrogramClustering"]


class PreparedUnit(ABC):
    """One unit's points, ready to be cut at any threshold."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.size = self.points.shape[0]

    @property
    @abstractmethod
    def diameter(self) -> float:
        """The largest pairwise distance (0 for a single neuron); at ``t = diameter`` the
        farthest pair is still apart (strict comparison)."""

    @property
    def one_cluster_threshold(self) -> float:
        """The smallest threshold that gives one cluster: the float just above the diameter
        (every pair is then below it), or 0 for a single neuron."""
        if self.size <= 1:
            return 0.0
        return math.nextafter(self.diameter, math.inf)

    def labels(self, threshold: float) -> np.ndarray:
        """Cluster id of every neuron, numbered 0.. in order of first appearance."""
        if not threshold >= 0 or math.isinf(threshold):
            raise InvalidParameterError(
                f"`threshold` must be a finite number >= 0, got {threshold!r}."
            )
        if threshold == 0:  # no distance is below 0 (shortcut of the strict rule)
            return np.arange(self.size)
        if threshold > self.diameter:  # every distance is below t (shortcut)
            return np.zeros(self.size, dtype=np.int64)
        return _first_appearance_order(self._labels(threshold))

    def cluster_ids(self, threshold: float) -> np.ndarray:
        """Like `labels` but numbered in any order (cheaper; enough for dealing)."""
        return self.labels(threshold)

    @abstractmethod
    def _labels(self, threshold: float) -> np.ndarray: ...


class Clustering(ABC):
    """A clustering strategy; `prepare` does the per-unit work shared by all thresholds."""

    name: str

    @abstractmethod
    def prepare(self, points: np.ndarray) -> PreparedUnit: ...


class _GreedyUnit(PreparedUnit):
    def __init__(self, points: np.ndarray) -> None:
        super().__init__(points)
        self._distances = squareform(pdist(self.points))  # n x n, kept for every threshold
        self._diameter = float(self._distances.max()) if self.size > 1 else 0.0

    @property
    def diameter(self) -> float:
        return self._diameter

    def _labels(self, threshold: float) -> np.ndarray:
        return _greedy(self._distances, threshold)


def _greedy(distances: np.ndarray, threshold: float) -> np.ndarray:
    """Algorithm 1 lines 10-20, vectorised over the candidate groups of each pivot.

    For pivot group G_z, the loop over G_q in list order merges G_q when the largest distance
    between their members is below t. ``far[j]`` is the largest distance from G_z's members to
    neuron j, so a group's linkage to G_z is the max of ``far`` over its members; ``far`` only
    grows as G_z absorbs, so a group rejected once stays rejected for this pivot.
    """
    n = distances.shape[0]
    group = np.arange(n)  # group id of every neuron = its pivot's index (list order)
    for z in range(n):
        if group[z] != z:
            continue  # absorbed by an earlier pivot
        far = distances[z].copy()
        position = -1
        while True:
            ids, group_max = _group_max(far, group)
            linkage_to_z = np.full(n, np.inf)  # ids that name no group stay +inf
            linkage_to_z[ids] = group_max
            linkage_to_z[z] = np.inf
            linkage_to_z[: position + 1] = np.inf
            candidates = np.flatnonzero(linkage_to_z < threshold)
            if candidates.size == 0:
                break
            q = int(candidates[0])
            members = group == q
            group[members] = z
            far = np.maximum(far, distances[members].max(axis=0))
            position = q
    return group


def _group_max(values: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The group ids present and the max of ``values`` over each group's members."""
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return sorted_groups[starts], np.maximum.reduceat(values[order], starts)


class GreedyClustering(Clustering):
    """The paper's greedy merge, O(n^2) per threshold."""

    name = "greedy"

    def prepare(self, points: np.ndarray) -> PreparedUnit:
        return _GreedyUnit(points)


class _DendrogramUnit(PreparedUnit):
    """Cuts are O(n): every flat cluster of a dendrogram is a run of consecutive leaves in its
    leaf order, and two neighbouring leaves share a cluster exactly when the height at which
    they merge (their lowest common ancestor's) is below the cut."""

    def __init__(self, points: np.ndarray) -> None:
        super().__init__(points)
        self._diameter = 0.0
        self._position = np.zeros(self.size, dtype=np.int64)  # leaf -> place in leaf order
        self._gap = np.zeros(max(self.size - 1, 0))  # merge height of neighbours p, p + 1
        if self.size > 1:
            merges = linkage(self.points, method="complete")
            self._diameter = float(merges[-1, 2])
            self._leaf_order(merges)

    def _leaf_order(self, merges: np.ndarray) -> None:
        n = self.size
        sizes = np.concatenate([np.ones(n, dtype=np.int64), merges[:, 3].astype(np.int64)])
        start = np.zeros(2 * n - 1, dtype=np.int64)
        for node in range(2 * n - 2, n - 1, -1):  # parents before children
            left, right, height = (
                int(merges[node - n, 0]),
                int(merges[node - n, 1]),
                merges[node - n, 2],
            )
            start[left] = start[node]
            start[right] = start[node] + sizes[left]
            self._gap[start[right] - 1] = height
        self._position = start[:n]

    @property
    def diameter(self) -> float:
        return self._diameter

    def _labels(self, threshold: float) -> np.ndarray:
        # neighbours merged at a height of t or more are split: every cluster's complete
        # linkage (its largest pairwise distance) is strictly below t
        run = np.concatenate([[0], np.cumsum(self._gap >= threshold)])
        return run[self._position]

    def cluster_ids(self, threshold: float) -> np.ndarray:
        if threshold == 0 or threshold > self.diameter:
            return self.labels(threshold)
        return self._labels(threshold)


class DendrogramClustering(Clustering):
    """Complete-linkage dendrogram built once, cut per threshold in O(n)."""

    name = "dendrogram"

    def prepare(self, points: np.ndarray) -> PreparedUnit:
        return _DendrogramUnit(points)


def _first_appearance_order(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]
