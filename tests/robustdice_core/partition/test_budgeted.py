"""The budgeted allocator's guarantees (docs/per_byte.md), property-tested."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustdice_core import InvalidParameterError
from robustdice_core.partition import Budgeted, budget_fractions, deal_budgeted

from .strategies import point_clouds

fractions = st.floats(0.0, 1.0, allow_nan=False)
copy_counts = st.integers(1, 5)
devices = st.integers(1, 6)


def _holdings(per_device: list[np.ndarray], size: int) -> np.ndarray:
    held = np.zeros((len(per_device), size), dtype=int)
    for d, neurons in enumerate(per_device):
        np.add.at(held[d], neurons, 1)
    return held


def _ranked(importance: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(importance.size), -importance))


@settings(max_examples=200, deadline=None)
@given(points=point_clouds(max_size=80), f=fractions, copies=copy_counts, nd=devices)
def test_deal_guarantees(points: np.ndarray, f: float, copies: int, nd: int) -> None:
    size = len(points)
    importance = points.sum(axis=1)
    protected = int(round(f * size))
    held = _holdings(deal_budgeted(importance, protected, copies, nd), size)
    c = min(copies, nd)
    assert held.max() <= 1  # no device holds a neuron twice
    ranked = _ranked(importance)
    top = ranked[:protected] if c > 1 else ranked[:0]
    copies_of = held.sum(axis=0)
    assert (copies_of[top] == c).all()  # the most important neurons: c copies
    assert (np.delete(copies_of, top) == 1).all()  # the rest exactly one
    loads = held.sum(axis=1)
    assert loads.max() - loads.min() <= 1  # balanced
    # any k < c failed devices keep every protected neuron
    for k in range(1, c):
        for failed in itertools.combinations(range(nd), k):
            alive = np.delete(held, list(failed), axis=0).any(axis=0)
            assert alive[top].all()


@settings(max_examples=100, deadline=None)
@given(points=point_clouds(max_size=80), f=fractions, nd=st.integers(2, 6))
def test_single_copies_are_dealt_round_robin_in_rank_order(
    points: np.ndarray, f: float, nd: int
) -> None:
    """Every ND consecutive unprotected ranks land on ND different devices: each device gets
    a similar share of every importance level."""
    importance = points.sum(axis=1)
    protected = int(round(f * len(points)))
    per_device = deal_budgeted(importance, protected, 2, nd)
    device_of = np.empty(len(points), dtype=int)
    for d, neurons in enumerate(per_device):
        device_of[neurons] = d
    singles = _ranked(importance)[protected:]
    steps = np.diff(device_of[singles]) % nd
    assert (steps == 1).all()


@pytest.mark.parametrize(("nd", "copies"), [(4, 2), (4, 3), (5, 2), (6, 3)])
def test_protected_neurons_spread_evenly_over_device_sets(nd: int, copies: int) -> None:
    """Over a full cycle of blocks every set of c devices holds as many protected neurons."""
    size = nd * comb(nd - 1, copies - 1)
    importance = np.linspace(1.0, 0.0, size)
    held = _holdings(deal_budgeted(importance, size, copies, nd), size).astype(bool)
    holders = {tuple(np.flatnonzero(held[:, j])) for j in range(size)}
    counts = [
        sum(np.array_equal(np.flatnonzero(held[:, j]), s) for j in range(size))
        for s in itertools.combinations(range(nd), copies)
    ]
    assert len(holders) == comb(nd, copies)
    assert len(set(counts)) == 1


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    copies=copy_counts,
    nd=devices,
    target=st.floats(0.0, 1.0),
    model_wide=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_budget_hits_the_replication_target(
    sizes: list[int], copies: int, nd: int, target: float, model_wide: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    c = min(copies, nd)
    replication = 1.0 + target * (c - 1)
    scores = [rng.random(n) for n in sizes] if model_wide else None
    partitioner = Budgeted([rng.random((n, 2)) for n in sizes], copies=copies)
    partition = partitioner.for_replication(replication, nd, model_scores=scores)
    assert abs(partition.replication_factor - replication) <= (c - 1) / (2 * sum(sizes)) + 1e-12
    fractions = budget_fractions(sizes, replication, copies, nd, model_scores=scores)
    assert all(0.0 <= f <= 1.0 for f in fractions)
    if scores is not None:  # the protected counts are the model-wide top scores' units
        flat = np.concatenate(scores)
        wanted = round(sum(f * n for f, n in zip(fractions, sizes, strict=True)))
        top = np.argsort(-flat, kind="stable")[:wanted]
        unit = np.repeat(np.arange(len(sizes)), sizes)
        expected = np.bincount(unit[top], minlength=len(sizes))
        got = [round(f * n) for f, n in zip(fractions, sizes, strict=True)]
        assert got == expected.tolist()


def test_model_wide_budget_goes_to_the_highest_scores() -> None:
    sizes = [4, 4]
    scores = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([5.0, 4.0, 0.0, 0.0])]
    fractions = budget_fractions(sizes, 1.25, 2, 4, model_scores=scores)
    assert fractions == [0.0, 0.5]
    assert budget_fractions(sizes, 1.25, 2, 4) == [0.25, 0.25]


def test_partition_records_its_settings_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    points = [rng.random((10, 3)), rng.random((7, 3))]
    first = Budgeted(points, [0.5, 0.2], copies=3).partition([10, 7], 4)
    assert first == Budgeted(points, [0.5, 0.2], copies=3).partition([10, 7], 4)
    assert dict(first.options) == {"copies": "3", "fractions": "0.5,0.2"}
    assert first.replication_factor == pytest.approx((10 + 7 + 2 * (5 + 1)) / 17)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fractions": 1.5}, "fraction of unit 0 must be in"),
        ({"fractions": [0.1]}, "`fractions` has 1 values"),
        ({"copies": 0}, "`copies` must be a whole number >= 1"),
        ({"copies": 2.5}, "`copies` must be a whole number >= 1"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    points = [np.zeros((3, 2)), np.zeros((2, 2))]
    with pytest.raises(InvalidParameterError, match=message):
        Budgeted(points, **kwargs)  # type: ignore[arg-type]


def test_bad_targets_and_sizes_are_refused() -> None:
    partitioner = Budgeted([np.zeros((3, 2))])
    with pytest.raises(InvalidParameterError, match=r"`replication` must be in \[1, 2\]"):
        partitioner.for_replication(2.5, 4)
    with pytest.raises(InvalidParameterError, match="`unit_sizes` must match"):
        partitioner.partition([4], 2)
    with pytest.raises(InvalidParameterError, match="`model_scores` must have one score"):
        partitioner.for_replication(1.5, 4, model_scores=[np.zeros(2)])
