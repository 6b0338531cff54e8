"""Step 2 of Algorithm 1 (DESIGN 3.3): both clusterings keep every cluster's diameter below t,
and the greedy one is exactly the paper's pseudocode."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.spatial.distance import pdist, squareform

from robustdice_core import InvalidParameterError
from robustdice_core.partition import (
    CLUSTERINGS,
    Clustering,
    DendrogramClustering,
    GreedyClustering,
    RobustDiCE,
)

from .strategies import (
    CLUSTERING_CLASSES,
    clouds_and_thresholds,
    point_clouds,
    thresholds,
)

# scipy warns when an n x n point cloud happens to look like a distance matrix (harmless here)
pytestmark = pytest.mark.filterwarnings("ignore:The symmetric non-negative hollow:UserWarning")


def _diameter(points: np.ndarray) -> float:
    return float(pdist(points).max()) if len(points) > 1 else 0.0


def _first_appearance(labels: list[int]) -> np.ndarray:
    seen: dict[int, int] = {}
    return np.array([seen.setdefault(label, len(seen)) for label in labels], dtype=np.int64)


def paper_greedy(points: np.ndarray, threshold: float) -> np.ndarray:
    """Algorithm 1 lines 10-20, literally: for G_z in G, for G_q in G - G_z, merge when the
    complete-linkage distance of G_z and G_q is below t; G shrinks as groups are merged.
    No special cases: the strict ``< t`` alone makes t = 0 leave every neuron alone and only
    t > diameter give one cluster."""
    distances = squareform(pdist(points)) if len(points) > 1 else np.zeros((1, 1))
    groups: list[list[int]] = [[i] for i in range(len(points))]
    z = 0
    while z < len(groups):
        pivot = groups[z]
        for other in [g for g in groups if g is not pivot]:
            union = pivot + other
            if max(distances[a, b] for a in union for b in union) < threshold:
                pivot.extend(other)
                groups.remove(other)
        z = groups.index(pivot) + 1
    label_of = {member: g for g, group in enumerate(groups) for member in group}
    return _first_appearance([label_of[i] for i in range(len(points))])


def _max_intra_distance(points: np.ndarray, labels: np.ndarray) -> float:
    widest = 0.0
    for label in np.unique(labels):
        members = points[labels == label]
        if len(members) > 1:
            widest = max(widest, float(pdist(members).max()))
    return widest


def _same_grouping(first: np.ndarray, second: np.ndarray) -> bool:
    """The two labelings group the neurons identically (a bijection between labels)."""
    pairs = set(zip(first.tolist(), second.tolist(), strict=True))
    return len(pairs) == len(set(first.tolist())) == len(set(second.tolist()))


# --------------------------------------------------------------------------- guarantee
@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
@settings(max_examples=60, deadline=None)
@given(case=clouds_and_thresholds())
def test_every_cluster_is_narrower_than_the_threshold(
    clustering: type[Clustering], case: tuple[np.ndarray, float]
) -> None:
    points, threshold = case
    prepared = clustering().prepare(points)
    labels = prepared.labels(threshold)
    assert labels.shape == (len(points),)
    # numbered 0.. in order of first appearance
    assert np.array_equal(_first_appearance(labels.tolist()), labels)
    diameter = _diameter(points)
    assert prepared.diameter == diameter
    if threshold == 0:
        assert np.array_equal(labels, np.arange(len(points)))
    elif threshold > diameter:
        assert np.all(labels == 0)  # every pair is below t: one cluster
    else:
        assert _max_intra_distance(points, labels) < threshold


@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
@settings(max_examples=30, deadline=None)
@given(points=point_clouds())
def test_one_cluster_threshold_is_the_smallest_that_gives_one_cluster(
    clustering: type[Clustering], points: np.ndarray
) -> None:
    prepared = clustering().prepare(points)
    smallest = prepared.one_cluster_threshold
    for threshold in (smallest, prepared.diameter + 0.1, 2.0):
        assert np.all(prepared.labels(threshold) == 0)
        assert np.unique(prepared.cluster_ids(threshold)).size == 1
    if len(points) == 1:
        assert smallest == 0.0
    else:
        assert smallest == math.nextafter(prepared.diameter, math.inf)
        assert np.unique(prepared.labels(prepared.diameter)).size > 1  # strict at t = diameter
    assert np.array_equal(prepared.labels(0.0), np.arange(len(points)))


@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
def test_a_threshold_equal_to_the_diameter_keeps_the_farthest_pair_apart(
    clustering: type[Clustering],
) -> None:
    """Neurons at 0, 0.5, 1 and t = 1: the pair 1 apart is not below t, so two clusters
    (a pair and a lone neuron), which ND = 3 pads to 3 + 3 copies: replication 2.0."""
    points = np.array([[0.0], [0.5], [1.0]])
    prepared = clustering().prepare(points)
    for labels in (prepared.labels(1.0), prepared.cluster_ids(1.0)):
        assert np.unique(labels).size == 2
        assert _max_intra_distance(points, labels) < 1.0
    partitioner = RobustDiCE([points], 1.0, clustering=clustering())
    assert partitioner.partition([3], 3).replication_factor == 2.0
    assert partitioner.partition_for(prepared.one_cluster_threshold, 3).replication_factor == 1.0


@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
@pytest.mark.parametrize("seed", range(4))
def test_cuts_at_the_pairwise_distances_themselves_are_strict(
    clustering: type[Clustering], seed: int
) -> None:
    """Ties: t equal to each pairwise distance (coarse grid points, so many equal distances).
    Brute force: every pair inside a cluster is checked; the greedy equals the literal
    pseudocode and the dendrogram equals scipy's fcluster just below t."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(seed)
    points = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(12, 1 + seed % 3))
    prepared = clustering().prepare(points)
    merges = linkage(points, method="complete")
    distances = squareform(pdist(points))
    for threshold in np.unique(distances).tolist():
        labels = prepared.labels(threshold)
        assert _same_grouping(labels, prepared.cluster_ids(threshold))
        pairs = (labels[:, None] == labels[None, :]) & ~np.eye(len(points), dtype=bool)
        assert np.all(distances[pairs] < threshold)  # every pair in every cluster, t = 0 too
        if clustering is GreedyClustering:
            assert np.array_equal(labels, paper_greedy(points, threshold))
        elif threshold > 0:  # fcluster keeps merges at height <= its cut (0 merges at 0)
            below = fcluster(merges, math.nextafter(threshold, 0.0), criterion="distance")
            assert _same_grouping(labels, below)


@settings(max_examples=80, deadline=None)
@given(case=clouds_and_thresholds(max_size=18))
def test_greedy_equals_the_literal_paper_pseudocode(case: tuple[np.ndarray, float]) -> None:
    points, threshold = case
    labels = GreedyClustering().prepare(points).labels(threshold)
    assert np.array_equal(labels, paper_greedy(points, threshold))


@pytest.mark.parametrize("seed", range(6))
def test_greedy_equals_the_paper_on_random_clouds_at_every_cut(seed: int) -> None:
    """Every threshold between consecutive pairwise distances (and the distances themselves)."""
    rng = np.random.default_rng(seed)
    points = rng.random((14, 1 + seed % 3))
    prepared = GreedyClustering().prepare(points)
    distances = np.unique(pdist(points))
    cuts = np.concatenate([distances, (distances[1:] + distances[:-1]) / 2])
    for threshold in cuts:
        assert np.array_equal(prepared.labels(threshold), paper_greedy(points, threshold))


@settings(max_examples=40, deadline=None)
@given(points=point_clouds(max_size=30), low=thresholds, high=thresholds)
def test_dendrogram_cuts_are_nested(points: np.ndarray, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    prepared = DendrogramClustering().prepare(points)
    fine, coarse = prepared.labels(low), prepared.labels(high)
    for label in np.unique(fine):
        assert np.unique(coarse[fine == label]).size == 1


# --------------------------------------------------------------------------- small cases
@pytest.mark.parametrize(
    ("clustering", "at_diameter"),
    [
        (GreedyClustering, [0, 0, 0, 0, 1]),  # pivot 0 absorbs 0.1, 0.5, 0.55 in list order
        (DendrogramClustering, [0, 0, 1, 1, 1]),  # {0.5, 0.55} + {1.0} merges at 0.5 first
    ],
)
def test_known_answer_on_a_line(clustering: type[Clustering], at_diameter: list[int]) -> None:
    points = np.array([[0.0], [0.1], [0.5], [0.55], [1.0]])
    prepared = clustering().prepare(points)
    assert prepared.diameter == 1.0
    assert prepared.labels(0.2).tolist() == [0, 0, 1, 1, 2]
    assert prepared.labels(0.1).tolist() == [0, 1, 2, 2, 3]  # 0.1 apart is not below 0.1
    assert prepared.labels(1.0).tolist() == at_diameter  # 1.0 apart is not below 1.0
    assert prepared.labels(1.0 + 1e-9).tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
def test_duplicates_and_a_single_neuron(clustering: type[Clustering]) -> None:
    same = clustering().prepare(np.full((4, 2), 0.3))
    assert same.diameter == 0.0
    assert same.labels(0.0).tolist() == [0, 1, 2, 3]
    assert same.labels(1e-9).tolist() == [0, 0, 0, 0]
    single = clustering().prepare(np.array([[0.7, 0.1]]))
    assert single.labels(0.0).tolist() == [0] and single.labels(0.5).tolist() == [0]


def test_greedy_order_matters_as_in_the_paper() -> None:
    """The pivot absorbs in list order, so the middle point joins the first pivot."""
    points = np.array([[0.0], [0.3], [0.6]])
    assert GreedyClustering().prepare(points).labels(0.35).tolist() == [0, 0, 1]
    assert paper_greedy(points, 0.35).tolist() == [0, 0, 1]


@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
@pytest.mark.parametrize("threshold", [-0.1, math.inf, math.nan])
def test_invalid_thresholds_are_rejected(clustering: type[Clustering], threshold: float) -> None:
    prepared = clustering().prepare(np.array([[0.0], [1.0]]))
    with pytest.raises(InvalidParameterError, match="threshold"):
        prepared.labels(threshold)


def test_clusterings_are_registered() -> None:
    assert CLUSTERINGS.names() == ["dendrogram", "greedy"]
    assert CLUSTERINGS.get("greedy") is GreedyClustering


@pytest.mark.parametrize("seed", range(6))
def test_dendrogram_cut_equals_scipy_fcluster(seed: int) -> None:
    """The O(n) leaf-order cut groups neurons exactly as scipy's fcluster just below t."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(seed)
    points = rng.random((int(rng.integers(2, 300)), int(rng.integers(1, 4))))
    prepared = DendrogramClustering().prepare(points)
    merges = linkage(points, method="complete")
    for threshold in rng.uniform(0.001, prepared.diameter, size=8):
        ours = prepared.cluster_ids(float(threshold))
        theirs = fcluster(merges, np.nextafter(threshold, 0.0), criterion="distance")
        assert _same_grouping(ours, theirs)
