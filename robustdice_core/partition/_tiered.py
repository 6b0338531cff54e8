"""Tiered budgets: the most important neurons get 3 copies, the next 2, the rest 1 (issue 10).

Budgeted replication with one copy count must pick the failures it designs for: ``c = 2``
protects twice as many neurons against one failed device, ``c = 3`` protects half as many
against two. Tiers spend one budget on both: ranked model-wide (by scores comparable across
units, the raw s3 divergences), the top ``M1`` neurons get ``c1`` copies and the next ``M2``
get ``c2`` (default 3 and 2). ``share`` is the part of the extra copies spent on the top
tier; `Tiered.search` picks it by a caller's objective (in `dse evaluate`: Top-1 under 1 and 2
failed devices on the calibration images, never the test images).

Placement (`deal_tiered`), per unit, ranks most important first (importance = the sum of the
normalised scores, as `Budgeted` ranks them):

- each tier's full blocks of ND neurons as `deal_budgeted` places them: rank r of block b on
  devices ``(r mod ND + o) mod ND``, ``o`` in ``{0} + O_b`` with O_b cycling through the
  (c-1)-subsets of ``{1..ND-1}``, so every device gets exactly ``c`` copies per block and the
  tier's neurons spread evenly over the sets of ``c`` devices;
- the rest (every tier's last partial block, ``c`` consecutive slots per neuron, then the
  single copies in rank order) on consecutive slots from device 0.

So no device holds a neuron twice, per-device neuron counts differ by at most one, and a
neuron of a tier with ``c`` copies survives any ``k < c`` failed devices. Copy counts are
capped at ND.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core.partition._base import Partitioner
from robustdice_core.partition._budgeted import _offset_sets, flat_model_scores
from robustdice_core.partition._partition import Partition
from robustdice_core.partition._robustdice import _checked_points, _size_mismatch

__all__ = ["DEFAULT_SHARES", "TierSplit", "Tiered", "deal_tiered", "tier_counts"]

DEFAULT_COPIES = (3, 2)
# Shares of the extra copies spent on the top tier, tried by `Tiered.search`: 0 is budgeted
# with c = 2, 1 (nearly) budgeted with c = 3.
DEFAULT_SHARES = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)


def deal_tiered(
    importance: np.ndarray, counts: Sequence[int], copies: Sequence[int], num_devices: int
) -> list[np.ndarray]:
    """Per device, the sorted neurons it computes (see the module docstring).

    Args:
        importance: ``[n]`` importance per neuron (ties: lower index first).
        counts: per tier, how many neurons it holds (top tier first; ``sum <= n``).
        copies: per tier, copies of each of its neurons (capped at ``num_devices``).
        num_devices: ND.
    """
    order = np.lexsort((np.arange(importance.size), -importance))  # most important first
    members: list[np.ndarray] = []
    devices: list[np.ndarray] = []
    tail_members: list[np.ndarray] = []
    start = 0
    for count, wanted in zip(counts, copies, strict=True):
        c = max(1, min(int(wanted), num_devices))
        tier = order[start : start + count]
        start += count
        full = count // num_devices * num_devices if c > 1 else 0
        rank = np.arange(full)
        offsets = _offset_sets(num_devices, c, full // num_devices)[rank // num_devices]
        members.append(np.repeat(tier[:full], c))
        devices.append(((rank[:, None] + offsets) % num_devices).reshape(-1))
        tail_members.append(np.repeat(tier[full:], c))
    tail = np.concatenate([*tail_members, order[start:]])
    member = np.concatenate([*members, tail])
    device = np.concatenate([*devices, np.arange(tail.size) % num_devices])
    return [np.sort(member[device == d]) for d in range(num_devices)]


def tier_counts(
    sizes: Sequence[int],
    replication: float,
    share: float,
    copies: Sequence[int],
    num_devices: int,
    model_scores: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """``[units, 2]`` neurons per unit in the top and the second tier for ``replication``.

    ``E = round((R - 1) N)`` extra copies; the top tier takes ``M1 = round(share E / (c1 -
    1))`` neurons (more if the second tier alone cannot hold the rest), the second
    ``M2 = round((E - M1 (c1 - 1)) / (c2 - 1))``. They are the ``M1`` and next ``M2`` highest
    ``model_scores`` of the whole model (ties: earlier unit, lower index); without scores,
    every unit's neurons rank by their rank quantile in the unit, which spreads each tier in
    proportion to unit size.
    """
    c1, c2 = (max(1, min(int(c), num_devices)) for c in copies)
    if not c1 > c2 > 1:
        raise InvalidParameterError(
            f"tiers need copies c1 > c2 >= 2 after capping at {num_devices} devices, got "
            f"{tuple(copies)}; use `budgeted` for one copy count."
        )
    if not 0.0 <= share <= 1.0:
        raise InvalidParameterError(f"`share` must be in [0, 1], got {share!r}.")
    if not 1.0 <= replication <= c1:
        raise InvalidParameterError(
            f"`replication` must be in [1, {c1}] for at most {c1} copies per neuron on "
            f"{num_devices} devices, got {replication}."
        )
    size = np.asarray(sizes, dtype=np.int64)
    total = int(size.sum())
    extra = int(round((replication - 1.0) * total))
    top = int(round(share * extra / (c1 - 1)))
    # the second tier holds at most the neurons the top one leaves
    top = max(top, math.ceil((extra - (c2 - 1) * total) / (c1 - c2)))
    top = min(top, extra // (c1 - 1), total)
    second = min(total - top, int(round((extra - top * (c1 - 1)) / (c2 - 1))))
    flat = _flat_scores(size, model_scores)
    unit = np.repeat(np.arange(size.size), size)
    ranked = np.argsort(-flat, kind="stable")
    first_counts = np.bincount(unit[ranked[:top]], minlength=size.size)
    second_counts = np.bincount(unit[ranked[top : top + second]], minlength=size.size)
    return np.stack([first_counts, second_counts], axis=1)


def _flat_scores(sizes: np.ndarray, model_scores: Sequence[np.ndarray] | None) -> np.ndarray:
    if model_scores is None:
        return np.concatenate([-(np.arange(n) + 0.5) / n for n in sizes.tolist()])
    return flat_model_scores(sizes, model_scores)


@dataclass(frozen=True)
class TierSplit:
    """One candidate of `Tiered.search`: the top tier's share and its objective value."""

    share: float
    objective: float
    partition: Partition


class Tiered(Partitioner):
    """Two tiers of protected neurons per unit (``copies[0]`` and ``copies[1]`` copies on
    distinct devices), the rest on one device, loads balanced to within one neuron.

    Args:
        points: per unit, ``[n_i, d]`` normalised scores (importance = their row sum).
        counts: per unit ``(top, second)`` tier sizes (None: nothing protected). The top
            ``top`` neurons of the unit form the first tier, the next ``second`` the second.
        copies: ``(c1, c2)`` with ``c1 > c2 >= 2`` (capped at ND when partitioning).
    """

    name = "tiered"
    label = "Tiered budget"

    def __init__(
        self,
        points: Sequence[np.ndarray],
        counts: Sequence[Sequence[int]] | None = None,
        *,
        copies: Sequence[int] = DEFAULT_COPIES,
    ) -> None:
        values = tuple(copies)
        if len(values) != 2 or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in values
        ):
            raise InvalidParameterError(f"`copies` must be two whole numbers, got {copies!r}.")
        if not values[0] > values[1] >= 2:
            raise InvalidParameterError(
                f"`copies` must be (c1, c2) with c1 > c2 >= 2, got {tuple(values)}."
            )
        self.copies = (int(values[0]), int(values[1]))
        arrays = [_checked_points(i, p) for i, p in enumerate(points)]
        self._importance = [p.sum(axis=1) for p in arrays]
        self._sizes = [p.shape[0] for p in arrays]
        self.counts = self._checked_counts(counts)

    @property
    def unit_sizes(self) -> list[int]:
        return list(self._sizes)

    def _checked_counts(self, counts: Sequence[Sequence[int]] | None) -> np.ndarray:
        if counts is None:
            return np.zeros((len(self._sizes), 2), dtype=np.int64)
        array = np.asarray(counts)
        if array.shape != (len(self._sizes), 2) or not np.issubdtype(array.dtype, np.integer):
            raise InvalidParameterError(
                f"`counts` must be one whole (top, second) pair per unit ({len(self._sizes)} "
                f"units), got shape {array.shape}."
            )
        for i, (pair, size) in enumerate(zip(array.tolist(), self._sizes, strict=True)):
            if min(pair) < 0 or sum(pair) > size:
                raise InvalidParameterError(
                    f"tier sizes {tuple(pair)} of unit {i} must be >= 0 and hold at most its "
                    f"{size} neurons."
                )
        return array.astype(np.int64)

    def _partition(self, unit_sizes: Sequence[int], num_devices: int) -> Partition:
        return self.partition_for(self.counts, num_devices, unit_sizes=unit_sizes)

    def partition_for(
        self,
        counts: Sequence[Sequence[int]] | np.ndarray,
        num_devices: int,
        *,
        unit_sizes: Sequence[int] | None = None,
        options: dict[str, str] | None = None,
    ) -> Partition:
        """Partition at other tier sizes, validated as `partition` is."""
        array = self._checked_counts(np.asarray(counts).tolist())
        if unit_sizes is not None and list(unit_sizes) != self._sizes:
            raise InvalidParameterError(_size_mismatch(list(unit_sizes), self._sizes))
        self.check_request(self._sizes, num_devices)
        per_device = [
            deal_tiered(importance, pair, self.copies, num_devices)
            for importance, pair in zip(self._importance, array.tolist(), strict=True)
        ]
        capped = [min(c, num_devices) for c in self.copies]
        return Partition.from_arrays(
            self.name,
            self._sizes,
            per_device,
            options={
                "copies": ",".join(str(c) for c in capped),
                "tiers": ";".join(f"{a},{b}" for a, b in array.tolist()),
                **(options or {}),
            },
        )

    def for_replication(
        self,
        replication: float,
        num_devices: int,
        *,
        share: float,
        model_scores: Sequence[np.ndarray] | None = None,
    ) -> Partition:
        """The partition with replication factor closest to ``replication`` whose top tier
        takes ``share`` of the extra copies (`tier_counts`)."""
        counts = tier_counts(
            self._sizes, replication, share, self.copies, num_devices, model_scores
        )
        allocation = "uniform" if model_scores is None else "model-wide"
        options = {"share": f"{share:g}", "allocation": allocation}
        return self.partition_for(counts, num_devices, options=options)

    def search(
        self,
        replication: float,
        num_devices: int,
        objective: Callable[[Partition], float],
        *,
        shares: Sequence[float] = DEFAULT_SHARES,
        model_scores: Sequence[np.ndarray] | None = None,
    ) -> tuple[Partition, list[TierSplit]]:
        """The split with the highest ``objective`` among ``shares`` (ties: the first share),
        and every candidate. Shares that give the same partition are scored once."""
        if not shares:
            raise InvalidParameterError("`shares` must name at least one top-tier share.")
        candidates: list[TierSplit] = []
        seen: dict[str, float] = {}  # tier sizes -> objective
        for share in shares:
            partition = self.for_replication(
                replication, num_devices, share=share, model_scores=model_scores
            )
            tiers = dict(partition.options)["tiers"]
            if tiers not in seen:
                seen[tiers] = float(objective(partition))
            candidates.append(TierSplit(share, seen[tiers], partition))
        best = max(candidates, key=lambda c: c.objective)  # max keeps the first of ties
        searched = " ".join(f"{c.share:g}:{c.objective:.4g}" for c in candidates)
        options = {**dict(best.partition.options), "searched": searched}
        chosen = dataclasses.replace(best.partition, options=tuple(sorted(options.items())))
        return chosen, candidates
