"""The partitioner extension point: validate in `partition`, compute in `_partition`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._partition import Partition

__all__ = ["Partitioner"]


class Partitioner(ABC):
    """Maps every unit's neurons onto ``num_devices`` devices."""

    name: str  # registry key
    label: str  # for tables
    min_devices: int = 1

    def partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        if num_devices < self.min_devices:
            raise InvalidParameterError(
                f"`num_devices` must be at least {self.min_devices} for {self.name}, "
                f"got {num_devices}."
            )
        if any(s < 1 for s in unit_sizes):
            raise InvalidParameterError("every unit must have at least one neuron.")
        return self._partition(unit_sizes, num_devices)

    @abstractmethod
    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition: ...
