"""`Partition`: which neurons of every unit each device computes (DESIGN 3.3), as plain data."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustdice_core._errors import CorruptFileError, InvalidParameterError

__all__ = ["Partition", "Recovery"]

# (slices [S, L] padded with C, lost slice per failure set [M] or -1), both int64 arrays.
Recovery = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Partition:
    """Per unit and device, the sorted neuron indices that device computes.

    For CDC, ``parity_device`` computes the element-wise sum of the other devices' slices
    (pre-activation); its own entries in ``assignments`` are empty.
    """

    method: str
    num_devices: int
    unit_sizes: tuple[int, ...]
    assignments: tuple[tuple[tuple[int, ...], ...], ...]
    parity_device: int | None = None
    thresholds: tuple[float, ...] = ()
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self._validate()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        method: str,
        unit_sizes: Sequence[int],
        per_device: Sequence[Sequence[np.ndarray]],
        *,
        parity_device: int | None = None,
        thresholds: Sequence[float] = (),
        options: dict[str, str] | None = None,
    ) -> Partition:
        """Build from ``per_device[unit][device]`` index arrays (sorted and deduplicated)."""
        assignments = tuple(
            tuple(tuple(_sorted_unique(a).tolist()) for a in unit) for unit in per_device
        )
        return cls(
            method=method,
            num_devices=len(per_device[0]) if per_device else 0,
            unit_sizes=tuple(int(s) for s in unit_sizes),
            assignments=assignments,
            parity_device=parity_device,
            thresholds=tuple(float(t) for t in thresholds),
            options=tuple(sorted((options or {}).items())),
        )

    def _validate(self) -> None:
        if self.num_devices < 1:
            raise InvalidParameterError("`num_devices` must be at least 1.")
        if len(self.assignments) != len(self.unit_sizes):
            raise InvalidParameterError(
                f"partition has {len(self.assignments)} units but {len(self.unit_sizes)} sizes."
            )
        if self.parity_device is not None and not 0 <= self.parity_device < self.num_devices:
            raise InvalidParameterError(f"`parity_device` {self.parity_device} out of range.")
        for i, (unit, size) in enumerate(zip(self.assignments, self.unit_sizes, strict=True)):
            if size < 1:
                raise InvalidParameterError(
                    f"unit {i} has {size} neurons; every unit must have at least one neuron."
                )
            if len(unit) != self.num_devices:
                raise InvalidParameterError(
                    f"unit {i} is assigned to {len(unit)} devices, expected {self.num_devices}."
                )
            indices = np.fromiter(itertools.chain.from_iterable(unit), dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= size):
                raise InvalidParameterError(f"unit {i} has a neuron index outside [0, {size}).")
            _check_no_repeats(i, unit, indices, size)
            held = np.zeros(size, dtype=bool)
            held[indices] = True
            if not held.all():
                raise InvalidParameterError(
                    f"unit {i}: neuron {int(np.argmin(held))} is held by no device."
                )

    # ----------------------------------------------------------------- figures
    @property
    def num_units(self) -> int:
        return len(self.unit_sizes)

    def holdings(self, unit: int) -> np.ndarray:
        """``[ND, C]`` bool: device d computes neuron j of ``unit``."""
        held = np.zeros((self.num_devices, self.unit_sizes[unit]), dtype=bool)
        for d, neurons in enumerate(self.assignments[unit]):
            held[d, list(neurons)] = True
        return held

    def parity_rows(self, unit: int) -> int:
        """Rows the parity device computes for ``unit`` (the longest data slice), else 0."""
        if self.parity_device is None:
            return 0
        return max(len(n) for n in self.assignments[unit])

    def neurons_held(self, unit: int, device: int) -> int:
        if device == self.parity_device:
            return self.parity_rows(unit)
        return len(self.assignments[unit][device])

    @property
    def unit_replication(self) -> tuple[float, ...]:
        """Per unit: neurons computed over all devices / the unit's neurons."""
        return tuple(
            sum(self.neurons_held(u, d) for d in range(self.num_devices)) / self.unit_sizes[u]
            for u in range(self.num_units)
        )

    @property
    def replication_factor(self) -> float:
        """Neurons computed over all devices / neurons of the model (1.0 = no redundancy)."""
        held = sum(
            self.neurons_held(u, d) for u in range(self.num_units) for d in range(self.num_devices)
        )
        return held / sum(self.unit_sizes)

    # ----------------------------------------------------------------- failures
    def alive_matrix(self, failure_sets: Sequence[Iterable[int]]) -> np.ndarray:
        """``[M, ND]`` bool: device d is up in failure set m."""
        alive = np.ones((len(failure_sets), self.num_devices), dtype=bool)
        for m, failed in enumerate(failure_sets):
            for d in failed:
                if not 0 <= d < self.num_devices:
                    raise InvalidParameterError(
                        f"failed device {d} out of range for {self.num_devices} devices."
                    )
                alive[m, d] = False
        return alive

    def survival_masks(self, failure_sets: Sequence[Iterable[int]]) -> list[np.ndarray]:
        """Per unit ``[M, C]`` bool: the neuron reaches the sync point in failure set m."""
        alive = self.alive_matrix(failure_sets)
        recovered = self._cdc_lost_device(alive) >= 0
        masks = []
        for u in range(self.num_units):
            held = self.holdings(u).astype(np.int32)
            survive = (alive.astype(np.int32) @ held) > 0
            survive[recovered] = True
            masks.append(survive)
        return masks

    def recovery(self, failure_sets: Sequence[Iterable[int]]) -> list[Recovery] | None:
        """CDC only: per unit, the data slices and the slice lost (and recovered) per set."""
        if self.parity_device is None:
            return None
        alive = self.alive_matrix(failure_sets)
        lost_device = self._cdc_lost_device(alive)
        data_devices = [d for d in range(self.num_devices) if d != self.parity_device]
        slice_of = {d: s for s, d in enumerate(data_devices)}
        lost = np.array([slice_of.get(int(d), -1) for d in lost_device], dtype=np.int64)
        specs: list[Recovery] = []
        for u in range(self.num_units):
            width = self.parity_rows(u)
            slices = np.full((len(data_devices), width), self.unit_sizes[u], dtype=np.int64)
            for s, d in enumerate(data_devices):
                neurons = self.assignments[u][d]
                slices[s, : len(neurons)] = neurons
            specs.append((slices, lost))
        return specs

    def _cdc_lost_device(self, alive: np.ndarray) -> np.ndarray:
        """Per failure set, the one lost data device that parity recovers, else -1."""
        lost = np.full(alive.shape[0], -1, dtype=np.int64)
        if self.parity_device is None:
            return lost
        data = np.delete(alive, self.parity_device, axis=1)
        single = alive[:, self.parity_device] & ((~data).sum(axis=1) == 1)
        data_ids = np.delete(np.arange(self.num_devices), self.parity_device)
        lost[single] = data_ids[np.argmax(~data[single], axis=1)]
        return lost

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "num_devices": self.num_devices,
            "unit_sizes": list(self.unit_sizes),
            "assignments": [[list(n) for n in unit] for unit in self.assignments],
            "parity_device": self.parity_device,
            "thresholds": list(self.thresholds),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        try:
            return cls(
                method=str(data["method"]),
                num_devices=int(data["num_devices"]),
                unit_sizes=tuple(int(s) for s in data["unit_sizes"]),
                assignments=tuple(
                    tuple(tuple(int(i) for i in n) for n in unit) for unit in data["assignments"]
                ),
                parity_device=(
                    None if data.get("parity_device") is None else int(data["parity_device"])
                ),
                thresholds=tuple(float(t) for t in data.get("thresholds", ())),
                options=tuple(
                    sorted((str(k), str(v)) for k, v in data.get("options", {}).items())
                ),
            )
        except InvalidParameterError as err:  # well-formed but breaks a rule
            raise CorruptFileError(f"invalid partition data: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(f"malformed partition data: {err!r}.") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Partition:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CorruptFileError(f"partition JSON is not valid JSON: {err}.") from err
        if not isinstance(data, dict):
            raise CorruptFileError("partition JSON must be an object.")
        return cls.from_dict(data)


def _check_no_repeats(
    unit: int, devices: tuple[tuple[int, ...], ...], indices: np.ndarray, size: int
) -> None:
    """A device computes a neuron at most once (``indices``: every device's list, chained)."""
    device = np.repeat(np.arange(len(devices)), [len(n) for n in devices])
    keys = np.sort(device * size + indices)  # (device, neuron) pairs, sorted
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if repeated.size:
        d, j = divmod(int(keys[repeated[0]]), size)
        raise InvalidParameterError(
            f"unit {unit}, device {d} lists neuron {j} twice; a device holds each neuron at "
            "most once (remove the repeat)."
        )


def _sorted_unique(values: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.size < 2 or bool((array[1:] > array[:-1]).all()):
        return array  # already strictly increasing (the partitioners' output)
    return np.unique(array)
