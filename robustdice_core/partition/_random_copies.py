"""LOP + random copies: a given number of extra copies per unit on random neurons (a control).

Every unit starts from LOP's contiguous split; then ``E`` extra copies are added, spread as
evenly as possible over the neurons (each gets ``E // n`` or one more; which ones get one more
is random) and placed on random devices that do not hold the neuron yet. The placement is
driven by the devices: the least-loaded device (random among ties) takes a random neuron it
does not hold from those still owed a copy, so the loads stay within one neuron of each other
unless the remaining neurons are all on the lighter devices already (then the copy goes to the
least-loaded device that can take it: balanced as far as the shuffle allows).

`LOPRandomCopies.like(reference)` copies a reference partition's per-unit counts, which makes
it the importance-blind control of a method at exactly its replication factor.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._partition import Partition

__all__ = ["LOPRandomCopies", "add_random_copies"]


def add_random_copies(held: np.ndarray, extra: int, rng: np.random.Generator) -> np.ndarray:
    """``held`` (``[ND, n]`` bool) with ``extra`` more copies on random distinct devices.

    ``extra`` is capped at the free (device, neuron) cells. Copies are added in layers: every
    neuron gets its next copy before any gets two more.
    """
    held = held.copy()
    extra = min(extra, int((~held).sum()))
    while extra > 0:
        copies = held.sum(axis=0)
        owed = np.flatnonzero(copies == copies.min())  # this layer's candidates
        extra -= _add_layer(held, owed, min(extra, owed.size), rng)
    return held


def _add_layer(held: np.ndarray, owed: np.ndarray, take: int, rng: np.random.Generator) -> int:
    """Give ``take`` of the ``owed`` neurons one more copy each; returns the copies added.

    Slots are filled on the least-loaded device that can still take one (random among ties);
    a device takes an unplaced neuron it does not hold, else one placed elsewhere in this
    layer whose device takes a replacement in turn (an augmenting path), so a device is only
    passed over when no reshuffle of this layer's copies makes room on it.
    """
    layer = _Layer(held, owed, rng)
    loads = held.sum(axis=1)
    num_devices = int(held.shape[0])
    tiebreak = rng.random(num_devices)
    open_devices = np.ones(num_devices, dtype=bool)
    added = 0
    while added < take and open_devices.any():
        key = np.where(open_devices, loads, np.iinfo(np.int64).max)
        d = int(np.lexsort((tiebreak, key))[0])
        if layer.augment(d, {d}):
            loads[d] += 1
            added += 1
        else:
            open_devices[d] = False
    for j, d in layer.device_of.items():
        held[d, j] = True
    return added


class _Layer:
    """One layer of copies being placed: who may take what, and who took what."""

    def __init__(self, held: np.ndarray, owed: np.ndarray, rng: np.random.Generator) -> None:
        self.candidates = [
            rng.permutation(owed[~held[d, owed]]).tolist() for d in range(len(held))
        ]
        self.unplaced = [list(c) for c in self.candidates]  # popped from the end
        self.device_of: dict[int, int] = {}

    def augment(self, device: int, visited: set[int]) -> bool:
        """Place one more copy on ``device``, moving copies of this layer if needed."""
        pool = self.unplaced[device]
        while pool:
            j = pool.pop()
            if j not in self.device_of:
                self.device_of[j] = device
                return True
        for j in self.candidates[device]:
            other = self.device_of[j]  # every candidate is placed by now
            if other in visited:
                continue
            visited.add(other)
            if self.augment(other, visited):
                self.device_of[j] = device
                return True
        return False


class LOPRandomCopies(Partitioner):
    """LOP plus ``extra_copies[i]`` copies of random neurons of unit i on random devices.

    Args:
        extra_copies: per unit (or one for all), extra neuron copies beyond one each; capped
            at what distinct devices allow (``(ND - 1) * n``).
        seed: seeds the choice of neurons and devices.
    """

    name = "random-copies"
    label = "LOP + random copies"

    def __init__(self, extra_copies: Sequence[int] | int, *, seed: int = 0) -> None:
        self.extra_copies = _counts(extra_copies)
        self.seed = seed

    @classmethod
    def like(cls, reference: Partition, *, seed: int = 0) -> LOPRandomCopies:
        """The same per-unit number of copies as ``reference`` (which must not be CDC)."""
        if reference.parity_device is not None:
            raise InvalidParameterError(
                f"`reference` ({reference.method}) has a parity device; random copies match "
                "partitions whose devices hold plain neuron copies."
            )
        extra = [
            sum(len(neurons) for neurons in unit) - size
            for unit, size in zip(reference.assignments, reference.unit_sizes, strict=True)
        ]
        return cls(extra, seed=seed)

    def check_request(self, unit_sizes: Sequence[int], num_devices: int) -> None:
        super().check_request(unit_sizes, num_devices)
        if len(self.extra_copies) not in (1, len(unit_sizes)):
            raise InvalidParameterError(
                f"`extra_copies` has {len(self.extra_copies)} values for {len(unit_sizes)} "
                "units; give one per unit or a single value."
            )

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        rng = np.random.default_rng(self.seed)
        counts = self.extra_copies
        if len(counts) == 1:
            counts = counts * len(unit_sizes)
        per_device = []
        for size, extra in zip(unit_sizes, counts, strict=True):
            held = np.zeros((num_devices, size), dtype=bool)
            for d, block in enumerate(np.array_split(np.arange(size), num_devices)):
                held[d, block] = True
            held = add_random_copies(held, extra, rng)
            per_device.append([np.flatnonzero(row) for row in held])
        return Partition.from_arrays(
            self.name, unit_sizes, per_device, options={"seed": str(self.seed)}
        )


def _counts(values: Sequence[int] | int) -> tuple[int, ...]:
    items = [values] if not isinstance(values, Sequence) else list(values)
    try:
        counts = tuple(operator.index(v) for v in items)
    except TypeError:
        raise InvalidParameterError(
            f"`extra_copies` must be whole numbers, got {values!r}."
        ) from None
    if not counts or min(counts) < 0:
        raise InvalidParameterError(
            f"`extra_copies` must be one or more whole numbers >= 0, got {values!r}."
        )
    return counts
