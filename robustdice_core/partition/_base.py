"""The partitioner extension point: validate in `partition`, compute in `_partition`."""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._partition import Partition

__all__ = ["Partitioner", "check_partition_request"]


def check_partition_request(
    unit_sizes: Sequence[int], num_devices: int, *, method: str, min_devices: int = 1
) -> None:
    """The checks every partitioner runs before computing: one place for all entry points."""
    try:
        devices = operator.index(num_devices)
    except TypeError:
        raise InvalidParameterError(
            f"`num_devices` must be a whole number, got {num_devices!r}."
        ) from None
    if devices < min_devices:
        raise InvalidParameterError(
            f"`num_devices` must be at least {min_devices} for {method}, got {devices}."
        )
    for i, size in enumerate(unit_sizes):
        if size < 1:
            raise InvalidParameterError(
                f"unit {i} has {size} neurons; every unit must have at least one neuron "
                "(leave empty layers out of the partition)."
            )


class Partitioner(ABC):
    """Maps every unit's neurons onto ``num_devices`` devices."""

    name: str  # registry key
    label: str  # for tables
    min_devices: int = 1

    def partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        self.check_request(unit_sizes, num_devices)
        return self._partition(unit_sizes, num_devices)

    def check_request(self, unit_sizes: Sequence[int], num_devices: int) -> None:
        """Raise `InvalidParameterError` unless this partitioner can split ``unit_sizes``."""
        check_partition_request(
            unit_sizes, num_devices, method=self.name, min_devices=self.min_devices
        )

    @abstractmethod
    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition: ...
