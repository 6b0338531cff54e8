"""Graded replication: each unit's copies filled in by importance, from LOP to full replication.

One value per unit, its *level* ``x`` in [0, 1]: the unit holds ``rho = 1 + x (ND - 1)``
copies per neuron on average (x = 0 is LOP, x = 1 full replication). The copies are filled
most important first, as water fills a basin: with ``b = floor(rho)``, the top
``round((rho - b) n)`` neurons get ``b + 1`` copies and the rest ``b``. So at rho <= 2 it is
`Budgeted` with two copies (k = 1 covered for the top neurons), between 2 and 3 every neuron
survives one failure and the top ones two, and so on: one searched value per unit reaches
every replication level, which two-copy budgets cannot (docs/per_byte.md, "Searching").

Placement is `deal_tiered`'s: full blocks of ND neurons per copy count on cycling device
sets, the rest on consecutive slots, so no device holds a neuron twice and per-device neuron
counts differ by at most one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._budgeted import _model_wide_top, unit_values
from robustdice_core.partition._partition import Partition
from robustdice_core.partition._robustdice import _checked_points, _size_mismatch
from robustdice_core.partition._tiered import deal_tiered

__all__ = ["Graded", "graded_copies", "graded_levels"]

ROUNDING = 1e-9  # a level computed for a whole number of copies may land just below it


def graded_levels(
    unit_sizes: Sequence[int],
    replication: float,
    num_devices: int,
    *,
    model_scores: Sequence[np.ndarray] | None = None,
) -> list[float]:
    """Per-unit levels whose replication factor is closest to ``replication``.

    Every neuron gets ``b = floor(R)`` copies and ``round((R - b) N)`` neurons one more:
    with ``model_scores`` (comparable across units, as the raw s3 divergences) the model's
    highest (`budget_fractions`' rule), else the same share of every unit.
    """
    if not 1.0 <= replication <= num_devices:
        raise InvalidParameterError(
            f"`replication` must be in [1, {num_devices}] on {num_devices} devices, got "
            f"{replication}."
        )
    sizes = np.asarray(unit_sizes, dtype=np.int64)
    if num_devices == 1:
        return [0.0] * sizes.size
    lower = min(int(math.floor(replication + ROUNDING)), num_devices)
    share = replication - lower
    if model_scores is None:
        rho = np.full(sizes.size, float(replication))
    else:
        wanted = min(int(sizes.sum()), int(round(share * sizes.sum())))
        rho = lower + _model_wide_top(sizes, wanted, model_scores) / sizes
    return [float(min(max((r - 1.0) / (num_devices - 1), 0.0), 1.0)) for r in rho]


def graded_copies(level: float, size: int, num_devices: int) -> tuple[int, int, int]:
    """``(upper, lower, count)``: the top ``count`` of ``size`` neurons get ``upper`` copies,
    the rest ``lower`` (``upper = lower + 1``, both capped at ``num_devices``)."""
    if not 0.0 <= level <= 1.0:
        raise InvalidParameterError(f"a graded level must be in [0, 1], got {level!r}.")
    rho = 1.0 + level * (num_devices - 1)
    lower = min(int(math.floor(rho + ROUNDING)), num_devices)
    count = 0 if lower == num_devices else min(size, int(round((rho - lower) * size)))
    return min(lower + 1, num_devices), lower, count


class Graded(Partitioner):
    """Per unit, copies filled in by importance up to the unit's level (module docstring).

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (importance = their row sum).
        levels: per unit (or one for all) the level x in [0, 1].
    """

    name = "graded"
    label = "Graded"

    def __init__(
        self, points: Sequence[np.ndarray], levels: Sequence[float] | float = 0.0
    ) -> None:
        arrays = [_checked_points(i, p) for i, p in enumerate(points)]
        self._importance = [p.sum(axis=1) for p in arrays]
        self._sizes = [p.shape[0] for p in arrays]
        self.levels = self._expand(levels)

    @property
    def unit_sizes(self) -> list[int]:
        return list(self._sizes)

    def _expand(self, levels: Sequence[float] | float) -> tuple[float, ...]:
        return unit_values(levels, len(self._sizes), "level")

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        return self.partition_for(self.levels, num_devices, unit_sizes=unit_sizes)

    def partition_for(
        self,
        levels: Sequence[float] | float,
        num_devices: int,
        *,
        unit_sizes: Sequence[int] | None = None,
    ) -> Partition:
        """Partition at other levels, validated as `partition` is (`check_request`)."""
        values = self._expand(levels)
        if unit_sizes is not None and list(unit_sizes) != self._sizes:
            raise InvalidParameterError(_size_mismatch(list(unit_sizes), self._sizes))
        self.check_request(self._sizes, num_devices)
        per_device = []
        for importance, level in zip(self._importance, values, strict=True):
            upper, lower, count = graded_copies(level, importance.size, num_devices)
            counts = (count, importance.size - count)
            per_device.append(deal_tiered(importance, counts, (upper, lower), num_devices))
        return Partition.from_arrays(
            self.name,
            self._sizes,
            per_device,
            options={"levels": ",".join(f"{v:.6g}" for v in values)},
        )

    def for_replication(
        self,
        replication: float,
        num_devices: int,
        *,
        model_scores: Sequence[np.ndarray] | None = None,
    ) -> Partition:
        """The partition with replication factor closest to ``replication`` (`graded_levels`:
        the extra copies where ``model_scores`` are highest, else evenly over units)."""
        levels = graded_levels(self._sizes, replication, num_devices, model_scores=model_scores)
        partition = self.partition_for(levels, num_devices)
        allocation = "uniform" if model_scores is None else "model-wide"
        options = {**dict(partition.options), "allocation": allocation}
        return dataclasses.replace(partition, options=tuple(sorted(options.items())))
