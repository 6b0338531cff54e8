"""The partitioner contract suite (every partitioner) and the baselines of DESIGN 3.4."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from robustdice_core import InvalidParameterError
from robustdice_core.partition import (
    BASELINES,
    CDC,
    LOP,
    Budgeted,
    FullReplication,
    GreedyClustering,
    LOPRandomCopies,
    Partition,
    Partitioner,
    RandomClustering,
    RobustDiCE,
)

SIZES = (7, 12, 5, 1, 3)


def _points(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, 3)) for n in SIZES]


FACTORIES: dict[str, Callable[[], Partitioner]] = {
    "lop": LOP,
    "replication": FullReplication,
    "cdc": CDC,
    "robustdice-t0": lambda: RobustDiCE(_points(), 0.0),
    "robustdice-t0.3": lambda: RobustDiCE(_points(), 0.3),
    "robustdice-per-unit": lambda: RobustDiCE(_points(), [0.1, 0.5, 0.8, 0.2, 0.0]),
    "robustdice-t2": lambda: RobustDiCE(_points(), 2.0),
    "robustdice-greedy": lambda: RobustDiCE(_points(), 0.4, clustering=GreedyClustering()),
    "budgeted-f0": lambda: Budgeted(_points(), 0.0),
    "budgeted-c2": lambda: Budgeted(_points(), [0.3, 0.5, 1.0, 1.0, 0.0]),
    "budgeted-c3": lambda: Budgeted(_points(), 0.5, copies=3),
    "budgeted-all-c9": lambda: Budgeted(_points(), 1.0, copies=9),
    "random-clustering": lambda: RandomClustering(_points(), 0.3, seed=1),
    "random-clustering-greedy": lambda: RandomClustering(
        _points(), [0.1, 0.5, 0.8, 0.2, 0.0], clustering=GreedyClustering(), seed=2
    ),
    "random-copies": lambda: LOPRandomCopies([3, 5, 0, 2, 4], seed=1),
    "random-copies-many": lambda: LOPRandomCopies(30, seed=3),
}


@pytest.fixture(params=sorted(FACTORIES))
def partitioner(request: pytest.FixtureRequest) -> Partitioner:
    return FACTORIES[request.param]()


@pytest.fixture(params=[2, 3, 4, 6])
def num_devices(request: pytest.FixtureRequest) -> int:
    return int(request.param)


# --------------------------------------------------------------------------- contract suite
def test_json_round_trip(partitioner: Partitioner, num_devices: int) -> None:
    partition = partitioner.partition(SIZES, num_devices)
    restored = Partition.from_json(partition.to_json())
    assert restored == partition
    assert hash(restored) == hash(partition)
    assert Partition.from_dict(partition.to_dict()) == partition
    assert restored.to_json() == partition.to_json()


def test_shape_and_coverage(partitioner: Partitioner, num_devices: int) -> None:
    partition = partitioner.partition(SIZES, num_devices)
    assert partition.method == partitioner.name
    assert partition.num_devices == num_devices
    assert partition.unit_sizes == SIZES
    for unit, size in enumerate(SIZES):
        held = partition.holdings(unit)
        assert held.shape == (num_devices, size)
        assert held.any(axis=0).all()  # every neuron held by at least one device
        for neurons in partition.assignments[unit]:
            assert list(neurons) == sorted(set(neurons))


def test_no_failure_keeps_everything_and_total_failure_nothing(
    partitioner: Partitioner, num_devices: int
) -> None:
    partition = partitioner.partition(SIZES, num_devices)
    masks = partition.survival_masks([(), tuple(range(num_devices))])
    for unit_masks in masks:
        assert unit_masks[0].all()
        assert not unit_masks[1].any()


def test_survivors_are_the_union_of_surviving_holdings(
    partitioner: Partitioner, num_devices: int
) -> None:
    """Exactly the union for plain partitions; CDC may add one recovered slice."""
    partition = partitioner.partition(SIZES, num_devices)
    sets = [(d,) for d in range(num_devices)] + [(0, num_devices - 1)]
    masks = partition.survival_masks(sets)
    for unit in range(len(SIZES)):
        held = partition.holdings(unit)
        for m, failed in enumerate(sets):
            alive = [d for d in range(num_devices) if d not in failed]
            union = held[alive].any(axis=0)
            if partition.parity_device is None:
                assert np.array_equal(masks[unit][m], union)
            else:
                assert np.all(masks[unit][m] >= union)


def test_num_devices_is_validated(partitioner: Partitioner) -> None:
    with pytest.raises(InvalidParameterError, match="`num_devices` must be at least"):
        partitioner.partition(SIZES, 0)
    if isinstance(partitioner, CDC):
        with pytest.raises(InvalidParameterError, match="at least 2 for cdc"):
            partitioner.partition(SIZES, 1)
    else:
        single = partitioner.partition(SIZES, 1)
        assert single.replication_factor == 1.0
        assert all(single.holdings(u).all() for u in range(len(SIZES)))


def test_empty_units_are_rejected(partitioner: Partitioner) -> None:
    with pytest.raises(InvalidParameterError):
        partitioner.partition((*SIZES[:-1], 0), 2)


def test_replication_factor(partitioner: Partitioner, num_devices: int) -> None:
    partition = partitioner.partition(SIZES, num_devices)
    total = sum(SIZES)
    if isinstance(partitioner, LOP):
        expected = 1.0
    elif isinstance(partitioner, FullReplication):
        expected = float(num_devices)
    elif isinstance(partitioner, CDC):
        parity = sum(-(-n // (num_devices - 1)) for n in SIZES)
        expected = (total + parity) / total
    else:
        held = sum(partition.holdings(u).sum() for u in range(len(SIZES)))
        expected = held / total
        assert 1.0 <= expected <= num_devices
    assert partition.replication_factor == pytest.approx(expected)


# --------------------------------------------------------------------------- baselines
def test_baselines_are_registered() -> None:
    assert BASELINES.names() == ["cdc", "lop", "replication"]
    assert BASELINES.get("cdc") is CDC


@pytest.mark.parametrize(("size", "nd"), [(10, 3), (4, 4), (3, 5), (1, 2), (12, 6)])
def test_lop_is_contiguous_and_balanced(size: int, nd: int) -> None:
    partition = LOP().partition([size], nd)
    slices = partition.assignments[0]
    flat = [j for neurons in slices for j in neurons]
    assert flat == list(range(size))  # contiguous, in device order, no replicas
    lengths = [len(n) for n in slices]
    assert max(lengths) - min(lengths) <= 1
    assert sum(lengths) == size


def test_full_replication_holds_everything() -> None:
    partition = FullReplication().partition([5, 2], 3)
    assert all(partition.holdings(u).all() for u in range(2))
    assert partition.replication_factor == 3.0


@pytest.mark.parametrize(("size", "nd"), [(10, 4), (3, 4), (7, 2), (1, 3)])
def test_cdc_layout(size: int, nd: int) -> None:
    partition = CDC().partition([size], nd)
    parity = nd - 1
    assert partition.parity_device == parity
    assert partition.assignments[0][parity] == ()
    data = partition.assignments[0][:parity]
    assert [j for neurons in data for j in neurons] == list(range(size))
    rows = -(-size // (nd - 1))
    assert partition.parity_rows(0) == rows
    assert partition.neurons_held(0, parity) == rows
    assert partition.neurons_held(0, 0) == len(data[0])
    assert partition.replication_factor == pytest.approx((size + rows) / size)


def test_cdc_survival_masks() -> None:
    partition = CDC().partition([10], 4)  # data slices 0-3, 4-6, 7-9; device 3 is parity
    sets = [(), (0,), (1,), (3,), (0, 1), (1, 3), (0, 1, 2), (0, 1, 2, 3)]
    (masks,) = partition.survival_masks(sets)
    expected = np.ones((len(sets), 10), dtype=bool)
    expected[4, 0:7] = False  # two data slices lost: both zero
    expected[5, 4:7] = False  # data + parity lost: the data slice is zero
    expected[6, :] = False
    expected[7, :] = False
    assert np.array_equal(masks, expected)


def test_cdc_recovery_spec() -> None:
    partition = CDC().partition([10], 4)
    sets = [(), (0,), (2,), (3,), (0, 1), (1, 3)]
    recovery = partition.recovery(sets)
    assert recovery is not None
    ((slices, lost),) = recovery
    assert slices.tolist() == [[0, 1, 2, 3], [4, 5, 6, 10], [7, 8, 9, 10]]  # padded with C
    assert lost.tolist() == [-1, 0, 2, -1, -1, -1]
    assert LOP().partition([10], 4).recovery(sets) is None


def test_every_method_is_registered_in_one_place() -> None:
    from robustdice_core import BASELINES, PARTITIONERS

    assert PARTITIONERS.names() == [
        "budgeted",
        "cdc",
        "graded",
        "lop",
        "random-clustering",
        "random-copies",
        "replication",
        "robustdice",
        "tiered",
    ]
    scored = {"robustdice", "budgeted", "graded", "random-clustering", "random-copies", "tiered"}
    assert set(BASELINES.names()) == set(PARTITIONERS.names()) - scored
    assert all(PARTITIONERS.get(n).name == n for n in PARTITIONERS.names())
