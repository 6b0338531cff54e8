"""`Partition` as plain data: validation, figures, failure masks and (de)serialisation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from robustdice_core import CorruptFileError, InvalidParameterError
from robustdice_core.partition import Partition


def _small() -> Partition:
    """Unit 0: 4 neurons over 3 devices, neuron 0 replicated; unit 1: 2 neurons."""
    return Partition.from_arrays(
        "manual",
        [4, 2],
        [
            [np.array([0, 1]), np.array([2, 0]), np.array([3, 3])],
            [np.array([0]), np.array([1]), np.array([], dtype=np.int64)],
        ],
        thresholds=[0.25, 0.5],
        options={"clustering": "greedy"},
    )


def test_from_arrays_sorts_and_deduplicates() -> None:
    partition = _small()
    assert partition.assignments == (((0, 1), (0, 2), (3,)), ((0,), (1,), ()))
    assert partition.num_devices == 3
    assert partition.thresholds == (0.25, 0.5)
    assert partition.options == (("clustering", "greedy"),)


def test_figures() -> None:
    partition = _small()
    assert partition.num_units == 2
    assert partition.holdings(0).tolist() == [
        [True, True, False, False],
        [True, False, True, False],
        [False, False, False, True],
    ]
    assert partition.neurons_held(0, 1) == 2 and partition.neurons_held(1, 2) == 0
    assert partition.parity_rows(0) == 0
    assert partition.replication_factor == pytest.approx(7 / 6)


def test_survival_masks_by_hand() -> None:
    partition = _small()
    sets = [(), (0,), (1,), (0, 2), (0, 1), (0, 1, 2)]
    unit0, unit1 = partition.survival_masks(sets)
    assert unit0.tolist() == [
        [True, True, True, True],
        [True, False, True, True],  # neuron 0 survives on device 1
        [True, True, False, True],
        [True, False, True, False],
        [False, False, False, True],
        [False, False, False, False],
    ]
    assert unit1.tolist() == [
        [True, True],
        [False, True],
        [True, False],
        [False, True],
        [False, False],
        [False, False],
    ]
    assert partition.alive_matrix([(1,)]).tolist() == [[True, False, True]]


def test_failed_device_out_of_range_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="failed device 3 out of range"):
        _small().survival_masks([(3,)])


def test_json_is_plain_and_round_trips() -> None:
    partition = _small()
    data = json.loads(partition.to_json())
    assert data == {
        "method": "manual",
        "num_devices": 3,
        "unit_sizes": [4, 2],
        "assignments": [[[0, 1], [0, 2], [3]], [[0], [1], []]],
        "parity_device": None,
        "thresholds": [0.25, 0.5],
        "options": {"clustering": "greedy"},
    }
    assert Partition.from_json(partition.to_json()) == partition
    assert len({partition, Partition.from_json(partition.to_json())}) == 1


def test_partitions_compare_by_value() -> None:
    other = Partition.from_arrays("manual", [2], [[np.array([0, 1]), np.array([1])]])
    assert other != _small()
    assert other == Partition.from_dict(other.to_dict())


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"method": "x"}', "malformed partition data"),
        (
            '{"method": "x", "num_devices": "two", "unit_sizes": [1], "assignments": [[[0]]]}',
            "malformed",
        ),
    ],
)
def test_malformed_json_raises_corrupt_file_error(text: str, match: str) -> None:
    with pytest.raises(CorruptFileError, match=match):
        Partition.from_json(text)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"num_devices": 0}, "`num_devices` must be at least 1"),
        ({"unit_sizes": (4,)}, "2 units but 1 sizes"),
        ({"assignments": (((0, 1, 2, 3),), ((0, 1),))}, "assigned to 1 devices, expected 3"),
        ({"assignments": (((0,), (1,), (2, 9)), ((0,), (1,), ()))}, r"outside \[0, 4\)"),
        ({"assignments": (((0,), (1,), (2,)), ((0,), (1,), ()))}, "neuron 3 is held by no"),
        (
            {"assignments": (((0, 1), (2, 0, 2), (3,)), ((0,), (1,), ()))},
            "unit 0, device 1 lists neuron 2 twice",
        ),
        ({"unit_sizes": (4, 0)}, "unit 1 has 0 neurons"),
        ({"parity_device": 3}, "`parity_device` 3 out of range"),
    ],
)
def test_invalid_partitions_are_rejected(change: dict[str, Any], match: str) -> None:
    valid = _small()
    fields: dict[str, Any] = {
        "method": valid.method,
        "num_devices": valid.num_devices,
        "unit_sizes": valid.unit_sizes,
        "assignments": valid.assignments,
        "parity_device": valid.parity_device,
    }
    with pytest.raises(InvalidParameterError, match=match):
        Partition(**{**fields, **change})


def test_from_dict_rejects_a_neuron_listed_twice_on_one_device() -> None:
    """Read as is, [0, 1, 0] on one device would count neuron 0 twice (replication 4/3)."""
    data = Partition.from_arrays("manual", [3], [[np.array([0, 1, 2])]]).to_dict()
    data["assignments"][0][0] = [0, 1, 0, 2]
    with pytest.raises(CorruptFileError, match="unit 0, device 0 lists neuron 0 twice"):
        Partition.from_dict(data)
    with pytest.raises(CorruptFileError, match="unit 0, device 0 lists neuron 0 twice"):
        Partition.from_json(json.dumps(data))
