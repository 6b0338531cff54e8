"""Budgeted replication: the top fraction of every unit's neurons gets ``c`` copies.

Per unit, neurons are ranked by importance (the sum of their normalised scores, as
`RobustDiCE` ranks them), the top ``m = round(f * n)`` get ``c`` copies on ``c`` distinct
devices and the rest one copy. With ``c = k + 1`` the protected neurons survive any ``k``
failed devices; the extra memory is spent on nothing else (Algorithm 1 pads small clusters
to a multiple of ND, which puts lone neurons on every device whatever their importance).

Placement (`deal_budgeted`), ND devices, ranks r = 0, 1, ... most important first:

- Protected neurons in full blocks of ND: rank r in block b = r // ND goes to devices
  ``(r mod ND + o) mod ND`` for ``o`` in the block's offset set ``{0} + O_b``, where O_b
  cycles through the (c-1)-subsets of ``{1..ND-1}``. Every block gives each device exactly
  ``c`` copies, and over a full cycle every set of ``c`` devices holds the same number of
  protected neurons (so no pair of failed devices takes out more of them than another).
- The rest (the protected neurons of a last partial block, ``c`` copies each, then the single
  copies in rank order) is dealt on consecutive slots from device 0: ``c`` consecutive slots
  are ``c`` distinct devices, and consecutive slots keep the loads within one of each other.
  Single copies dealt in rank order give every device a similar share of every importance
  level.

So every device holds each neuron at most once, and per-device neuron counts differ by at
most 1. ``c`` is capped at ND (copies must be on distinct devices).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._partition import Partition
from robustdice_core.partition._robustdice import _checked_points, _size_mismatch

__all__ = ["Budgeted", "budget_fractions", "deal_budgeted", "protected_count"]


def unit_values(values: Sequence[float] | float, units: int, what: str) -> tuple[float, ...]:
    """One value in [0, 1] per unit, from one per unit or a single one for all; ``what``
    names the value in errors (the argument is its plural in backquotes)."""
    expanded = (
        [float(values)] * units if isinstance(values, (int, float)) else [float(v) for v in values]
    )
    if len(expanded) != units:
        raise InvalidParameterError(
            f"`{what}s` has {len(expanded)} values but the model has {units} units; give one "
            "per unit or a single value."
        )
    for i, v in enumerate(expanded):
        if not 0.0 <= v <= 1.0:
            raise InvalidParameterError(f"{what} of unit {i} must be in [0, 1], got {v!r}.")
    return tuple(expanded)


def protected_count(fraction: float, size: int) -> int:
    """Neurons of a ``size``-neuron unit that get the extra copies: ``round(fraction * n)``."""
    return min(size, int(round(fraction * size)))


def _offset_sets(num_devices: int, copies: int, blocks: int) -> np.ndarray:
    """``[blocks, copies]`` device offsets per full block: 0, then a (c-1)-subset of
    ``1..ND-1``, cycling through all such subsets in lexicographic order."""
    subsets = itertools.cycle(itertools.combinations(range(1, num_devices), copies - 1))
    rows = [(0, *subset) for subset in itertools.islice(subsets, blocks)]
    return np.array(rows, dtype=np.int64).reshape(blocks, copies)


def deal_budgeted(
    importance: np.ndarray, protected: int, copies: int, num_devices: int
) -> list[np.ndarray]:
    """Per device, the sorted neurons it computes (see the module docstring).

    Args:
        importance: ``[n]`` importance per neuron (ties: lower index first).
        protected: how many of the most important neurons get ``copies`` copies.
        copies: copies of a protected neuron; capped at ``num_devices``.
        num_devices: ND.
    """
    size = importance.size
    copies = max(1, min(copies, num_devices))
    protected = protected if copies > 1 else 0
    order = np.lexsort((np.arange(size), -importance))  # most important first
    full = protected // num_devices * num_devices
    blocks = full // num_devices
    rank = np.arange(full)
    block_devices = rank[:, None] + _offset_sets(num_devices, copies, blocks)[rank // num_devices]
    tail = np.concatenate([np.repeat(order[full:protected], copies), order[protected:]])
    member = np.concatenate([np.repeat(order[:full], copies), tail])
    device = np.concatenate(
        [block_devices.reshape(-1) % num_devices, np.arange(tail.size) % num_devices]
    )
    return [np.sort(member[device == d]) for d in range(num_devices)]


def budget_fractions(
    unit_sizes: Sequence[int],
    replication: float,
    copies: int,
    num_devices: int,
    *,
    model_scores: Sequence[np.ndarray] | None = None,
) -> list[float]:
    """Per-unit fractions whose replication factor is closest to ``replication``.

    ``M = round((R - 1) N / (c - 1))`` neurons are protected in all, so the achieved factor is
    within ``(c - 1) / (2N)`` of R. Which units they come from:

    - ``model_scores`` given (per unit ``[n_i]`` scores comparable *across* units, such as the
      raw s3 divergences, which all measure the same output distribution): the ``M`` highest
      of the whole model (ties: earlier unit, lower index). Copies go where a loss hurts most.
    - otherwise the same fraction in every unit (largest remainder over unit sizes).
    """
    copies = max(1, min(copies, num_devices))
    sizes = np.asarray(unit_sizes, dtype=np.int64)
    if not 1.0 <= replication <= copies:
        raise InvalidParameterError(
            f"`replication` must be in [1, {copies}] for {copies} copies per protected neuron "
            f"on {num_devices} devices, got {replication}; raise `copies` (at most ND)."
        )
    if copies == 1:
        return [0.0] * sizes.size
    total = int(sizes.sum())
    wanted = min(total, int(round((replication - 1.0) * total / (copies - 1))))
    if model_scores is None:
        counts = _proportional(sizes, wanted)
    else:
        counts = _model_wide_top(sizes, wanted, model_scores)
    return [int(m) / int(n) for m, n in zip(counts, sizes, strict=True)]


def _proportional(sizes: np.ndarray, wanted: int) -> np.ndarray:
    """``wanted`` split over units in proportion to ``sizes`` (largest remainder)."""
    share = wanted * sizes / sizes.sum()
    counts = np.floor(share).astype(np.int64)
    remainder = wanted - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return counts


def flat_model_scores(sizes: np.ndarray, model_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Every unit's scores in one checked array (one finite score per neuron)."""
    scores = [np.asarray(s, dtype=np.float64).reshape(-1) for s in model_scores]
    if [s.size for s in scores] != sizes.tolist():
        raise InvalidParameterError(
            f"`model_scores` must have one score per neuron of every unit ({sizes.tolist()}), "
            f"got sizes {[s.size for s in scores]}."
        )
    flat = np.concatenate(scores)
    if not np.isfinite(flat).all():
        raise InvalidParameterError("`model_scores` must be finite.")
    return flat


def _model_wide_top(
    sizes: np.ndarray, wanted: int, model_scores: Sequence[np.ndarray]
) -> np.ndarray:
    """Per unit, how many of the model's ``wanted`` highest ``model_scores`` it holds."""
    flat = flat_model_scores(sizes, model_scores)
    unit = np.repeat(np.arange(sizes.size), sizes)
    top = np.argsort(-flat, kind="stable")[:wanted]
    return np.bincount(unit[top], minlength=sizes.size)


class Budgeted(Partitioner):
    """The top fraction of each unit's neurons (by importance) on ``copies`` devices, the rest
    on one, devices balanced to within one neuron.

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (importance = their row sum).
        fractions: per unit (or one for all) the protected fraction f in [0, 1].
        copies: copies of a protected neuron (``k + 1`` survives ``k`` failed devices);
            capped at the number of devices.
    """

    name = "budgeted"
    label = "Budgeted"

    def __init__(
        self,
        points: Sequence[np.ndarray],
        fractions: Sequence[float] | float = 0.0,
        *,
        copies: int = 2,
    ) -> None:
        if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
            raise InvalidParameterError(f"`copies` must be a whole number >= 1, got {copies!r}.")
        self.copies = int(copies)
        arrays = [_checked_points(i, p) for i, p in enumerate(points)]
        self._importance = [p.sum(axis=1) for p in arrays]
        self._sizes = [p.shape[0] for p in arrays]
        self.fractions = self._expand(fractions)

    @property
    def unit_sizes(self) -> list[int]:
        return list(self._sizes)

    def _expand(self, fractions: Sequence[float] | float) -> tuple[float, ...]:
        return unit_values(fractions, len(self._sizes), "fraction")

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        return self.partition_for(self.fractions, num_devices, unit_sizes=unit_sizes)

    def partition_for(
        self,
        fractions: Sequence[float] | float,
        num_devices: int,
        *,
        unit_sizes: Sequence[int] | None = None,
    ) -> Partition:
        """Partition at other fractions, validated as `partition` is (`check_request`)."""
        values = self._expand(fractions)
        if unit_sizes is not None and list(unit_sizes) != self._sizes:
            raise InvalidParameterError(_size_mismatch(list(unit_sizes), self._sizes))
        self.check_request(self._sizes, num_devices)
        per_device = [
            deal_budgeted(
                importance, protected_count(f, importance.size), self.copies, num_devices
            )
            for importance, f in zip(self._importance, values, strict=True)
        ]
        return Partition.from_arrays(
            self.name,
            self._sizes,
            per_device,
            options={
                "copies": str(min(self.copies, num_devices)),
                "fractions": ",".join(f"{f:.6g}" for f in values),
            },
        )

    def for_replication(
        self,
        replication: float,
        num_devices: int,
        *,
        model_scores: Sequence[np.ndarray] | None = None,
    ) -> Partition:
        """The partition whose replication factor is closest to ``replication``; the units'
        shares of the copies as `budget_fractions` sets them."""
        fractions = budget_fractions(
            self._sizes, replication, self.copies, num_devices, model_scores=model_scores
        )
        partition = self.partition_for(fractions, num_devices)
        allocation = "uniform" if model_scores is None else "model-wide"
        options = {**dict(partition.options), "allocation": allocation}
        return dataclasses.replace(partition, options=tuple(sorted(options.items())))
