"""The tiered allocator (docs/per_byte.md): guarantees property-tested, the shared partitioner
contract suite of `test_baselines.py` run on it, the replication target and the split search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustdice_core import InvalidParameterError
from robustdice_core.partition import PARTITIONERS, Partition, Partitioner, Tiered, deal_tiered
from robustdice_core.partition._tiered import tier_counts

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
    "tiered-none": lambda: Tiered(_points()),
    "tiered-mixed": lambda: Tiered(_points(), [[2, 3], [4, 4], [1, 1], [1, 0], [0, 3]]),
    "tiered-all-top": lambda: Tiered(_points(), [[n, 0] for n in SIZES]),
    "tiered-c4-c2": lambda: Tiered(
        _points(), [[3, 2], [5, 5], [0, 5], [0, 1], [1, 1]], copies=(4, 2)
    ),
}


@pytest.fixture(params=sorted(FACTORIES))
def partitioner(request: pytest.FixtureRequest) -> Partitioner:
    return FACTORIES[request.param]()


def _holdings(per_device: list[np.ndarray], size: int) -> np.ndarray:
    held = np.zeros((len(per_device), size), dtype=int)
    for d, neurons in enumerate(per_device):
        np.add.at(held[d], neurons, 1)
    return held


@st.composite
def tiers(draw: st.DrawFn) -> tuple[np.ndarray, list[int], tuple[int, int], int]:
    points = draw(point_clouds(max_size=80))
    size = len(points)
    top = draw(st.integers(0, size))
    second = draw(st.integers(0, size - top))
    c2 = draw(st.integers(2, 4))
    c1 = draw(st.integers(c2 + 1, 6))
    nd = draw(st.integers(1, 7))
    return points, [top, second], (c1, c2), nd


@settings(max_examples=300, deadline=None)
@given(case=tiers())
def test_deal_guarantees(case: tuple[np.ndarray, list[int], tuple[int, int], int]) -> None:
    points, counts, copies, nd = case
    size = len(points)
    importance = points.sum(axis=1)
    held = _holdings(deal_tiered(importance, counts, copies, nd), size)
    assert held.max() <= 1  # no device holds a neuron twice
    loads = held.sum(axis=1)
    assert loads.max() - loads.min() <= 1  # balanced
    ranked = np.lexsort((np.arange(size), -importance))
    bounds = np.cumsum([0, *counts])
    copies_of = held.sum(axis=0)
    for tier, wanted in enumerate(copies):
        members = ranked[bounds[tier] : bounds[tier + 1]]
        c = min(wanted, nd)
        assert (copies_of[members] == c).all()  # the tier's copy count, capped at ND
        for k in range(1, c):  # any k < c failed devices keep every neuron of the tier
            for failed in itertools.combinations(range(nd), k):
                alive = np.asarray(np.delete(held, list(failed), axis=0).any(axis=0))
                assert alive[members].all()
    assert (copies_of[ranked[bounds[-1] :]] == 1).all()  # the rest: one copy


def test_tiers_spread_over_device_sets() -> None:
    """Full blocks cycle through the device subsets: with 12 neurons in the 2-copy tier on
    4 devices, every pair of devices holds exactly 2 of them (the worst pair is no worse)."""
    importance = np.linspace(1.0, 0.0, 20)
    held = _holdings(deal_tiered(importance, [4, 12], (3, 2), 4), 20).astype(bool)
    second = np.arange(4, 16)  # linspace: rank = index
    pairs = [
        held[list(p)][:, second].all(axis=0).sum() for p in itertools.combinations(range(4), 2)
    ]
    assert pairs == [2] * 6


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    share=st.floats(0.0, 1.0),
    fraction=st.floats(0.0, 1.0),
    scored=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_tier_counts_hit_the_replication_target(
    sizes: list[int], share: float, fraction: float, scored: bool, seed: int
) -> None:
    total = sum(sizes)
    target = 1.0 + 2.0 * fraction  # in [1, 3]
    rng = np.random.default_rng(seed)
    scores = [rng.random(n) for n in sizes] if scored else None
    counts = tier_counts(sizes, target, share, (3, 2), 4, scores)
    assert (counts >= 0).all() and (counts.sum(axis=1) <= sizes).all()
    achieved = 1.0 + (2 * counts[:, 0].sum() + counts[:, 1].sum()) / total
    assert abs(achieved - target) <= 1.0 / total + 1e-9  # one copy of rounding at most
    if scored:
        assert scores is not None
        # per unit the tiers take the highest scores: top tier >= second tier >= the rest
        ordered = [np.sort(s)[::-1] for s in scores]
        rest = np.asarray(sizes)[:, None] - counts.sum(axis=1, keepdims=True)
        start = np.zeros((len(sizes), 1), dtype=int)
        bounds = np.cumsum(np.concatenate([start, counts, rest], axis=1), axis=1)
        levels = [
            np.concatenate([o[b[j] : b[j + 1]] for o, b in zip(ordered, bounds, strict=True)])
            for j in range(3)
        ]
        for upper, lower in itertools.pairwise(levels):
            if upper.size and lower.size:
                assert upper.min() >= lower.max()


def test_share_moves_copies_between_tiers() -> None:
    sizes = [20, 20]
    none = tier_counts(sizes, 1.5, 0.0, (3, 2), 4)
    half = tier_counts(sizes, 1.5, 0.5, (3, 2), 4)
    every = tier_counts(sizes, 1.5, 1.0, (3, 2), 4)
    assert none.sum(axis=0).tolist() == [0, 20]  # budgeted with c = 2
    assert half.sum(axis=0).tolist() == [5, 10]
    assert every.sum(axis=0).tolist() == [10, 0]  # budgeted with c = 3
    # above 2 copies per neuron on average the top tier must take some of the budget
    assert tier_counts(sizes, 2.5, 0.0, (3, 2), 4).sum(axis=0).tolist() == [20, 20]


def test_for_replication_records_its_choices() -> None:
    tiered = Tiered(_points())
    partition = tiered.for_replication(1.5, 4, share=0.5)
    options = dict(partition.options)
    assert options["copies"] == "3,2"
    assert options["share"] == "0.5"
    assert options["allocation"] == "uniform"
    assert abs(partition.replication_factor - 1.5) <= 1.0 / sum(SIZES) + 1e-9
    rebuilt = Tiered(_points(), _tier_pairs(options["tiers"])).partition(SIZES, 4)
    assert rebuilt.assignments == partition.assignments


def _tier_pairs(text: str) -> list[list[int]]:
    return [[int(v) for v in pair.split(",")] for pair in text.split(";")]


def test_search_takes_the_best_share_and_scores_each_partition_once() -> None:
    tiered = Tiered(_points())
    calls: list[str] = []

    def objective(partition: Partition) -> float:
        tiers = dict(partition.options)["tiers"]
        calls.append(tiers)
        return float(dict(partition.options)["share"] == "0.5")

    best, candidates = tiered.search(1.5, 4, objective, shares=(0.0, 0.5, 0.5, 1.0))
    assert dict(best.options)["share"] == "0.5"
    assert [c.share for c in candidates] == [0.0, 0.5, 0.5, 1.0]
    assert len(calls) == len(set(calls)) == 3
    assert "searched" in dict(best.options)
    # ties: the first share wins
    first, _ = tiered.search(1.5, 4, lambda p: 1.0, shares=(0.25, 0.75))
    assert dict(first.options)["share"] == "0.25"


def test_bad_input_is_refused() -> None:
    points = _points()
    with pytest.raises(InvalidParameterError, match="c1 > c2"):
        Tiered(points, copies=(2, 2))
    with pytest.raises(InvalidParameterError, match="two whole numbers"):
        Tiered(points, copies=(3,))
    with pytest.raises(InvalidParameterError, match="pair per unit"):
        Tiered(points, [[1, 1]])
    with pytest.raises(InvalidParameterError, match="at most its"):
        Tiered(points, [[7, 1], [0, 0], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(InvalidParameterError, match="share"):
        Tiered(points).for_replication(1.5, 4, share=1.5)
    with pytest.raises(InvalidParameterError, match=r"\[1, 3\]"):
        Tiered(points).for_replication(3.5, 4, share=0.5)
    with pytest.raises(InvalidParameterError, match="c1 > c2"):
        Tiered(points).for_replication(1.5, 2, share=0.5)  # both tiers capped at 2 copies
    with pytest.raises(InvalidParameterError, match="one score per neuron"):
        Tiered(points).for_replication(1.5, 4, share=0.5, model_scores=[np.ones(3)])
    with pytest.raises(InvalidParameterError, match="at least one"):
        Tiered(points).search(1.5, 4, lambda p: 0.0, shares=())


def test_registered() -> None:
    assert PARTITIONERS.get("tiered") is Tiered
