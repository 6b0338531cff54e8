"""The graded allocator (docs/per_byte.md): copies filled by importance from LOP to full
replication; guarantees property-tested and the shared partitioner contract suite."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustdice_core import InvalidParameterError
from robustdice_core.partition import (
    LOP,
    PARTITIONERS,
    FullReplication,
    Graded,
    Partitioner,
    graded_copies,
)

from .strategies import point_clouds

# The contract suite, collected again here with this module's `partitioner` fixture.
from .test_baselines import (  # noqa: F401
    SIZES,
    _points,
    num_devices,
    test_empty_units_are_rejected,
    test_json_round_trip,
    test_no_failure_keeps_everything_and_total_failure_nothing,
    test_num_devices_is_validated,
    test_replication_factor,
    test_shape_and_coverage,
    test_survivors_are_the_union_of_surviving_holdings,
)

FACTORIES = {
    "graded-lop": lambda: Graded(_points()),
    "graded-mixed": lambda: Graded(_points(), [0.0, 0.2, 0.5, 0.77, 1.0]),
    "graded-full": lambda: Graded(_points(), 1.0),
}


@pytest.fixture(params=sorted(FACTORIES))
def partitioner(request: pytest.FixtureRequest) -> Partitioner:
    return FACTORIES[request.param]()


@settings(max_examples=300, deadline=None)
@given(points=point_clouds(max_size=80), level=st.floats(0.0, 1.0), nd=st.integers(1, 6))
def test_copies_follow_importance_and_survive_what_they_promise(
    points: np.ndarray, level: float, nd: int
) -> None:
    partition = Graded([points], level).partition([len(points)], nd)
    size = len(points)
    held = partition.holdings(0).astype(int)  # Partition refuses a neuron twice on a device
    loads = held.sum(axis=1)
    assert loads.max() - loads.min() <= 1  # balanced
    copies = held.sum(axis=0)
    importance = points.sum(axis=1)
    ranked = np.lexsort((np.arange(size), -importance))
    assert (np.diff(copies[ranked]) <= 0).all()  # more important: never fewer copies
    upper, lower, count = graded_copies(level, size, nd)
    assert sorted(copies.tolist(), reverse=True) == [upper] * count + [lower] * (size - count)
    assert abs(copies.sum() - (1 + level * (nd - 1)) * size) <= 0.5 + 1e-9
    for k in range(1, lower):  # every neuron has `lower` copies: any k < lower failures keep it
        for failed in itertools.combinations(range(nd), k):
            assert np.delete(held, list(failed), axis=0).any(axis=0).all()


def test_the_ends_are_lop_and_full_replication() -> None:
    points = _points()
    for nd in (2, 4):
        low = Graded(points, 0.0).partition(SIZES, nd)
        high = Graded(points, 1.0).partition(SIZES, nd)
        assert low.replication_factor == LOP().partition(SIZES, nd).replication_factor == 1.0
        assert high.replication_factor == FullReplication().partition(SIZES, nd).replication_factor


def test_below_two_copies_it_protects_the_most_important_neurons() -> None:
    points = [np.array([[0.1], [0.9], [0.5], [0.3]])]
    partition = Graded(points, 1 / 6).partition([4], 4)  # rho = 1.5: the top half get 2 copies
    copies = partition.holdings(0).sum(axis=0)
    assert copies.tolist() == [1, 2, 2, 1]


def test_for_replication_matches_the_factor_and_levels_are_checked() -> None:
    graded = Graded(_points())
    assert graded.for_replication(2.5, 4).replication_factor == pytest.approx(2.5, abs=0.05)
    with pytest.raises(InvalidParameterError, match=r"level of unit 1 must be in \[0, 1\]"):
        Graded(_points(), [0.0, 1.5, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidParameterError, match="`replication` must be in"):
        graded.for_replication(4.5, 4)
    assert PARTITIONERS.get("graded") is Graded
