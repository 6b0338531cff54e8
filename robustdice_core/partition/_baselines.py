"""Baselines in the same `Partition` structure (DESIGN 3.4): LOP, full replication, CDC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._partition import Partition

__all__ = ["LOP", "FullReplication", "CDC"]


def _contiguous_split(size: int, parts: int) -> list[np.ndarray]:
    return np.array_split(np.arange(size), parts)


class LOP(Partitioner):
    """DeeperThings' filter split: contiguous, equal-as-possible ranges, no replication."""

    name = "lop"
    label = "LOP"

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        per_device = [_contiguous_split(size, num_devices) for size in unit_sizes]
        return Partition.from_arrays(self.name, unit_sizes, per_device)


class FullReplication(Partitioner):
    """Every device computes every neuron (DMR/TMR/QMR, the paper's Optimal)."""

    name = "replication"
    label = "Full replication"

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        per_device = [[np.arange(size)] * num_devices for size in unit_sizes]
        return Partition.from_arrays(self.name, unit_sizes, per_device)


class CDC(Partitioner):
    """Coded distributed computing: ND-1 data devices plus one parity device (the last).

    The parity device computes the sum of the data slices' pre-activation outputs, so any
    single lost slice is recovered as parity minus the surviving slices.
    """

    name = "cdc"
    label = "CDC"
    min_devices = 2

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        parity = num_devices - 1
        per_device = [
            [*_contiguous_split(size, num_devices - 1), np.arange(0)] for size in unit_sizes
        ]
        return Partition.from_arrays(self.name, unit_sizes, per_device, parity_device=parity)
