"""Step 3 of Algorithm 1 and RobustDiCE's guarantees (DESIGN 3.3), property-tested."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist

from robustdice_core import InvalidParameterError
from robustdice_core.partition import (
    Clustering,
    Partition,
    RobustDiCE,
    deal_clusters,
)

from .strategies import (
    CLUSTERING_CLASSES,
    clouds_and_thresholds,
    device_counts,
    point_clouds,
    thresholds,
)

CLUSTERINGS = CLUSTERING_CLASSES

# scipy warns when an n x n point cloud happens to look like a distance matrix (harmless here)
pytestmark = pytest.mark.filterwarnings("ignore:The symmetric non-negative hollow:UserWarning")


def _importance(points: np.ndarray) -> np.ndarray:
    return points.sum(axis=1)


def _check_deal(
    labels: np.ndarray, importance: np.ndarray, per_device: list[np.ndarray], nd: int
) -> None:
    """Padding, equal shares, no replica on a holder, replicas from the most important."""
    assert len(per_device) == nd
    size = labels.size
    holders = Counter(int(j) for neurons in per_device for j in set(neurons.tolist()))
    copies = Counter(int(j) for neurons in per_device for j in neurons.tolist())
    for neurons in per_device:
        assert len(set(neurons.tolist())) == len(neurons)  # no device holds a neuron twice
    assert copies == holders
    assert set(copies) == set(range(size))  # every neuron is held
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        padded = -(-members.size // nd) * nd
        for neurons in per_device:  # same count from every cluster
            assert int(np.isin(neurons, members).sum()) == padded // nd
        # replicas cycle through the members, most important first (ties: lower index)
        ranked = sorted(members.tolist(), key=lambda j: (-importance[j], j))
        for rank, j in enumerate(ranked):
            expected = padded // members.size + (1 if rank < padded % members.size else 0)
            assert copies[j] == expected, (cluster, rank)


# --------------------------------------------------------------------------- guarantees
@pytest.mark.parametrize("clustering", CLUSTERINGS)
@settings(max_examples=50, deadline=None)
@given(case=clouds_and_thresholds(), nd=device_counts)
def test_partition_guarantees(
    clustering: type[Clustering], case: tuple[np.ndarray, float], nd: int
) -> None:
    points, threshold = case
    size = len(points)
    labels = clustering().prepare(points).labels(threshold)
    importance = _importance(points)
    per_device = deal_clusters(labels, importance, nd)
    _check_deal(labels, importance, per_device, nd)

    partition = RobustDiCE([points], threshold, clustering=clustering()).partition([size], nd)
    assert partition.assignments[0] == tuple(tuple(a.tolist()) for a in per_device)
    assert partition.holdings(0).any(axis=0).all()
    assert partition.thresholds == (threshold,)
    assert dict(partition.options) == {"clustering": clustering.name}

    diameter = float(pdist(points).max()) if size > 1 else 0.0
    if threshold == 0:  # every neuron alone: full replication
        assert partition.holdings(0).all()
        assert partition.replication_factor == nd
    elif threshold > diameter:  # every pair below t: one cluster, padding only
        assert np.all(labels == 0)
        assert partition.replication_factor <= 1 + (nd - 1) / size + 1e-12
        assert partition.replication_factor == -(-size // nd) * nd / size
    else:
        for cluster in np.unique(labels):
            members = points[labels == cluster]
            if len(members) > 1:
                assert float(pdist(members).max()) < threshold


@pytest.mark.parametrize("clustering", CLUSTERINGS)
@settings(max_examples=25, deadline=None)
@given(
    clouds=st.lists(point_clouds(max_size=20), min_size=1, max_size=3),
    data=st.data(),
    nd=device_counts,
)
def test_every_unit_uses_its_own_threshold(
    clustering: type[Clustering], clouds: list[np.ndarray], data: st.DataObject, nd: int
) -> None:
    ts = data.draw(st.lists(thresholds, min_size=len(clouds), max_size=len(clouds)))
    partitioner = RobustDiCE(clouds, ts, clustering=clustering())
    partition = partitioner.partition([len(c) for c in clouds], nd)
    assert partition.num_units == len(clouds)
    for unit, (points, threshold) in enumerate(zip(clouds, ts, strict=True)):
        labels = clustering().prepare(points).labels(threshold)
        expected = deal_clusters(labels, _importance(points), nd)
        assert partition.assignments[unit] == tuple(tuple(a.tolist()) for a in expected)
    assert partitioner.partition_for(ts, nd) == partition


def test_deal_clusters_known_answer() -> None:
    """Cluster {0, 1, 2} (importance 0 < 2 < 1) and the lone neuron 3 over 2 devices."""
    labels = np.array([0, 0, 0, 1])
    importance = np.array([0.1, 0.9, 0.5, 0.3])
    devices = deal_clusters(labels, importance, 2)
    # cluster 0 padded to 4: order 1, 2, 0, then replica of 1 -> devices 0: {1, 0}, 1: {2, 1}
    # cluster 1 padded to 2: 3, 3 -> both devices
    assert [d.tolist() for d in devices] == [[0, 1, 3], [1, 2, 3]]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("clustering", CLUSTERINGS)
def test_same_input_gives_the_same_partition(seed: int, clustering: type[Clustering]) -> None:
    def build() -> Partition:
        rng = np.random.default_rng(seed)
        points = [rng.random((n, 3)) for n in (17, 40, 9)]
        return RobustDiCE(points, [0.2, 0.35, 0.5], clustering=clustering()).partition(
            [17, 40, 9], 4
        )

    first, second = build(), build()
    assert first == second
    assert hash(first) == hash(second)
    assert first.to_json() == second.to_json()


def test_larger_thresholds_replicate_less_with_the_dendrogram() -> None:
    rng = np.random.default_rng(3)
    points = [rng.random((50, 3))]
    partitioner = RobustDiCE(points)
    factors = [partitioner.partition_for(t, 4).replication_factor for t in (0, 0.2, 0.5, 2)]
    assert factors[0] == 4.0
    assert factors == sorted(factors, reverse=True)
    assert factors[-1] == 52 / 50


def test_one_cluster_thresholds_sit_just_above_the_diameters() -> None:
    points = [np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), np.array([[0.2, 0.4]])]
    partitioner = RobustDiCE(points)
    assert partitioner.diameters == pytest.approx([2**0.5, 0.0])
    diameter = partitioner.diameters[0]
    assert partitioner.one_cluster_thresholds == [math.nextafter(diameter, math.inf), 0.0]
    # one cluster of 3 over 3 devices (no padding) + a lone neuron on every device
    one = partitioner.partition_for(partitioner.one_cluster_thresholds, 3)
    assert one.replication_factor == 6 / 4
    # at t = diameter the farthest pair stays apart: clusters of 2 and 1, each padded to 3
    assert partitioner.partition_for([diameter, 0.0], 3).replication_factor == 9 / 4


# --------------------------------------------------------------------------- validation
def test_threshold_count_must_match_the_units() -> None:
    points = [np.zeros((3, 2)), np.zeros((4, 2))]
    with pytest.raises(InvalidParameterError, match="`thresholds` has 3 values"):
        RobustDiCE(points, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("bad", [-0.5, float("inf"), float("nan")])
def test_invalid_thresholds_are_rejected(bad: float) -> None:
    with pytest.raises(InvalidParameterError, match="threshold of unit 0"):
        RobustDiCE([np.zeros((3, 2))], bad)


def test_unit_sizes_must_match_the_scored_neurons() -> None:
    partitioner = RobustDiCE([np.zeros((3, 2))], 0.1)
    with pytest.raises(InvalidParameterError, match="`unit_sizes`"):
        partitioner.partition([4], 2)
    with pytest.raises(InvalidParameterError, match="`num_devices`"):
        partitioner.partition([3], 0)


@pytest.mark.parametrize("clustering", CLUSTERINGS)
def test_partition_for_validates_like_partition(clustering: type[Clustering]) -> None:
    """One shared check: an empty unit or too few devices is a clear error from both entry
    points (partition_for used to end in a ZeroDivisionError)."""
    empty = RobustDiCE([np.zeros((3, 2)), np.zeros((0, 2))], 0.1, clustering=clustering())
    with pytest.raises(InvalidParameterError, match="unit 1 has 0 neurons"):
        empty.partition([3, 0], 2)
    with pytest.raises(InvalidParameterError, match="unit 1 has 0 neurons"):
        empty.partition_for(0.1, 2)
    partitioner = RobustDiCE([np.zeros((3, 2))], 0.1, clustering=clustering())
    for bad in (0, -1):
        match = f"`num_devices` must be at least 1 for robustdice, got {bad}"
        with pytest.raises(InvalidParameterError, match=match):
            partitioner.partition([3], bad)
        with pytest.raises(InvalidParameterError, match=match):
            partitioner.partition_for(0.1, bad)


@pytest.mark.parametrize("clustering", CLUSTERINGS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_points_are_rejected_naming_the_unit(
    clustering: type[Clustering], bad: float
) -> None:
    points = [np.zeros((3, 2)), np.array([[0.0, 0.1], [bad, 0.2]])]
    with pytest.raises(InvalidParameterError, match=r"`points` of unit 1 .*neuron 1"):
        RobustDiCE(points, clustering=clustering())
