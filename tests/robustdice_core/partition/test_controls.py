"""The importance-blind controls and replication matching (docs/per_byte.md)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustdice_core import InvalidParameterError
from robustdice_core.partition import (
    CDC,
    LOP,
    Clustering,
    DendrogramClustering,
    LOPRandomCopies,
    Partition,
    RandomClustering,
    RobustDiCE,
    match_replication,
)

from .strategies import CLUSTERING_CLASSES, clouds_and_thresholds

pytestmark = pytest.mark.filterwarnings("ignore:The symmetric non-negative hollow:UserWarning")


def _copies(partition: Partition, unit: int) -> np.ndarray:
    return partition.holdings(unit).sum(axis=0)


def _loads(partition: Partition, unit: int) -> list[int]:
    return [len(n) for n in partition.assignments[unit]]


# --------------------------------------------------------------------------- random copies
@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4),
    nd=st.integers(1, 6),
    share=st.floats(0.0, 1.2),
    seed=st.integers(0, 2**16),
)
def test_random_copies_guarantees(sizes: list[int], nd: int, share: float, seed: int) -> None:
    extra = [int(share * (nd - 1) * n) for n in sizes]
    partition = LOPRandomCopies(extra, seed=seed).partition(sizes, nd)
    lop = LOP().partition(sizes, nd)
    for unit, (size, wanted) in enumerate(zip(sizes, extra, strict=True)):
        held = partition.holdings(unit)
        assert (held >= lop.holdings(unit)).all()  # LOP plus copies
        copies = held.sum(axis=0)
        assert copies.sum() - size == min(wanted, (nd - 1) * size)  # capped at ND copies each
        assert copies.max() - copies.min() <= 1  # spread: every neuron's next copy first
        loads = _loads(partition, unit)
        assert max(loads) - min(loads) <= 1


def test_random_copies_are_seeded() -> None:
    sizes = [40, 25]
    first = LOPRandomCopies([20, 10], seed=4).partition(sizes, 4)
    assert first == LOPRandomCopies([20, 10], seed=4).partition(sizes, 4)
    assert first != LOPRandomCopies([20, 10], seed=5).partition(sizes, 4)
    assert dict(first.options) == {"seed": "4"}


def test_random_copies_like_a_reference_match_its_unit_replication() -> None:
    rng = np.random.default_rng(0)
    sizes = [12, 30, 7]
    reference = RobustDiCE([rng.random((n, 3)) for n in sizes], 0.2).partition(sizes, 4)
    control = LOPRandomCopies.like(reference, seed=1).partition(sizes, 4)
    assert control.unit_replication == pytest.approx(reference.unit_replication)
    with pytest.raises(InvalidParameterError, match="has a parity device"):
        LOPRandomCopies.like(CDC().partition(sizes, 4))


@pytest.mark.parametrize(
    ("extra", "message"),
    [(-1, "whole numbers >= 0"), ([], "whole numbers >= 0"), ([1.5], "whole numbers")],
)
def test_random_copies_refuse_bad_counts(extra: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        LOPRandomCopies(extra)  # type: ignore[arg-type]


def test_random_copies_need_one_count_per_unit() -> None:
    with pytest.raises(InvalidParameterError, match="`extra_copies` has 2 values for 3 units"):
        LOPRandomCopies([1, 2]).partition([3, 3, 3], 2)


# --------------------------------------------------------------------------- random clustering
@pytest.mark.parametrize("clustering", CLUSTERING_CLASSES)
@settings(max_examples=40, deadline=None)
@given(case=clouds_and_thresholds(), nd=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_random_clustering_keeps_robustdice_sizes(
    clustering: type[Clustering], case: tuple[np.ndarray, float], nd: int, seed: int
) -> None:
    points, threshold = case
    size = len(points)
    reference = RobustDiCE([points], threshold, clustering=clustering()).partition([size], nd)
    control = RandomClustering([points], threshold, clustering=clustering(), seed=seed)
    partition = control.partition([size], nd)
    assert partition.method == "random-clustering"
    assert partition.replication_factor == pytest.approx(reference.replication_factor)
    assert _loads(partition, 0) == _loads(reference, 0)  # equal shares per cluster
    # the same copy-count profile (same cluster sizes, same padding), on other neurons
    assert Counter(_copies(partition, 0).tolist()) == Counter(_copies(reference, 0).tolist())


def test_random_clustering_ignores_importance() -> None:
    rng = np.random.default_rng(3)
    points = [rng.random((64, 3))]
    reference = RobustDiCE(points, 0.15).partition([64], 4)
    shuffled = [RandomClustering(points, 0.15, seed=s).partition([64], 4) for s in range(4)]
    assert all(p != reference for p in shuffled)
    assert shuffled[0] == RandomClustering(points, 0.15, seed=0).partition([64], 4)
    assert dict(shuffled[1].options) == {"clustering": "dendrogram", "seed": "1"}


# --------------------------------------------------------------------------- matching
@pytest.mark.parametrize("target", [1.0, 1.1, 1.3, 1.5, 2.0, 3.1, 4.0])
def test_matching_finds_the_closest_step(target: float) -> None:
    """No scale on a fine grid gets closer to the target than the bisection (dendrogram
    cuts are nested, so the factor is monotone in the scale)."""
    rng = np.random.default_rng(7)
    points = [rng.random((n, 3)) for n in (16, 40, 9)]
    partitioner = RobustDiCE(points, clustering=DendrogramClustering())
    matched = match_replication(partitioner, target, 4)
    high = partitioner.one_cluster_thresholds
    grid = np.linspace(0.0, 1.0, 2001)
    factors = [
        partitioner.partition_for([s * h for h in high], 4).replication_factor for s in grid
    ]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))  # monotone
    assert abs(matched.error) <= min(abs(f - target) for f in factors) + 1e-12
    assert matched.thresholds == pytest.approx([matched.scale * h for h in high])
    assert matched.partition.thresholds == matched.thresholds
    assert matched.achieved == matched.partition.replication_factor


def test_matching_refuses_targets_out_of_range() -> None:
    partitioner = RobustDiCE([np.random.default_rng(0).random((8, 2))])
    for bad in (0.9, 4.5):
        with pytest.raises(InvalidParameterError, match=r"`--replication` must be in \[1, 4\]"):
            match_replication(partitioner, bad, 4)
