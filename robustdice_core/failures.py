"""Accuracy under device failures, measured by running the masked model (DESIGN 3.5).

All failure sets of a partition are evaluated in batched forwards: the network is split after
the first unit's layer, the part before it runs once per image (and is kept), and the rest runs
on ``groups x images`` samples, each group of images with its failure set's masks. Failure
sets that leave identical masks (common with replication) are evaluated once.

The work runs on the network's device (move the `MaskedNetwork` there first); test images are
moved there one chunk at a time. Samples per forward come from a memory budget (on CUDA by
default half the free memory, `robustdice_core._device`) or a fixed ``batch_size``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from robustdice_core._device import (
    check_batch_size,
    exact_float32,
    memory_budget_bytes,
    module_device,
)
from robustdice_core._errors import InvalidParameterError
from robustdice_core.masking import MaskedNetwork, activation_bytes_per_sample, repeat_groups
from robustdice_core.partition import Partition
from robustdice_core.zoo import LabelledImages

__all__ = ["FailureAccuracy", "FailureEvaluator", "SizeStats", "failure_sets"]

FailureSet = tuple[int, ...]
DEFAULT_BUDGET_MB = 1024  # CPU: activations of one batched forward


def failure_sets(num_devices: int, sizes: Iterable[int]) -> list[FailureSet]:
    """Every set of ``k`` failed devices for each ``k`` in ``sizes``, sorted by size."""
    result: list[FailureSet] = []
    for k in sorted(set(sizes)):
        if not 0 <= k <= num_devices:
            raise InvalidParameterError(
                f"failure count {k} is outside 0..{num_devices} for {num_devices} devices."
            )
        result.extend(itertools.combinations(range(num_devices), k))
    return result


@dataclass(frozen=True)
class SizeStats:
    """Top-1 over all failure sets of one size."""

    failed: int
    worst: float
    mean: float
    best: float
    count: int


@dataclass(frozen=True)
class FailureAccuracy:
    """Top-1 (fraction in [0, 1]) of one partition for every evaluated failure set."""

    num_devices: int
    failure_sets: tuple[FailureSet, ...]
    accuracy: tuple[float, ...]

    def sizes(self) -> list[int]:
        return sorted({len(f) for f in self.failure_sets})

    def by_size(self, failed: int) -> SizeStats:
        values = [
            a for f, a in zip(self.failure_sets, self.accuracy, strict=True) if len(f) == failed
        ]
        if not values:
            raise InvalidParameterError(f"no failure set of size {failed} was evaluated.")
        return SizeStats(failed, min(values), float(np.mean(values)), max(values), len(values))

    def expected(self, fail_prob: float) -> float:
        """Expected Top-1 when each device fails independently with probability ``fail_prob``.

        With every device down nothing is computed, which counts as 0. Needs every failure set
        of sizes 0..ND-1.
        """
        if not 0.0 <= fail_prob <= 1.0:
            raise InvalidParameterError(f"`fail_prob` must be in [0, 1], got {fail_prob}.")
        table = dict(zip(self.failure_sets, self.accuracy, strict=True))
        nd = self.num_devices
        total = 0.0
        for k in range(nd):
            for failed in itertools.combinations(range(nd), k):
                if failed not in table:
                    raise InvalidParameterError(
                        "expected accuracy needs every failure set of sizes 0.."
                        f"{nd - 1}; {failed} was not evaluated."
                    )
                total += fail_prob**k * (1.0 - fail_prob) ** (nd - k) * table[failed]
        return total

    def to_dict(self) -> dict[str, object]:
        return {
            "num_devices": self.num_devices,
            "failure_sets": [list(f) for f in self.failure_sets],
            "accuracy": list(self.accuracy),
        }


class FailureEvaluator:
    """Evaluates partitions of one network on one labelled test set, on the network's device.

    Args:
        net: the masked network (on the device the evaluation should run on).
        data: labelled test images (on any device; moved a chunk at a time).
        memory_budget_mb: bounds the activations of one batched forward (images x failure
            sets); the batch is sized from the largest activation per sample. Default: 1024
            on the CPU, half the free memory on CUDA.
        max_batch: an upper bound on samples per forward regardless of memory.
        cache_limit_mb: keep the activations after the first unit's layer for the whole test
            set when they fit, so every later evaluation starts from them.
        batch_size: samples per forward, overriding the memory budget and ``max_batch``.
    """

    def __init__(
        self,
        net: MaskedNetwork,
        data: LabelledImages,
        *,
        memory_budget_mb: int | None = None,
        max_batch: int = 8192,
        cache_limit_mb: int = 1024,
        batch_size: int | None = None,
    ) -> None:
        if len(data) == 0:
            raise InvalidParameterError("the test set is empty.")
        check_batch_size(batch_size)
        self.net = net
        self.data = data
        self.device = module_device(net)
        self._prefix, self._suffix = net.split_after(net.units[0].linear_node)
        self._samples_per_forward = batch_size or self._from_budget(memory_budget_mb, max_batch)
        self._image_chunk = min(len(data), self._samples_per_forward)
        self._cached: list[tuple[Tensor, ...]] | None = None
        per_image = math.prod(net.node_shape(net.units[0].linear_node)) * 4
        if per_image * len(data) <= cache_limit_mb * 2**20:
            self._cached = [self._live(start) for start in self._chunk_starts()]
        self._intact_count: int | None = None  # no neuron missing: the same for every partition

    @property
    def samples_per_forward(self) -> int:
        """Images x failure sets per batched forward."""
        return self._samples_per_forward

    def _from_budget(self, memory_budget_mb: int | None, max_batch: int) -> int:
        budget = memory_budget_bytes(self.device, memory_budget_mb, DEFAULT_BUDGET_MB)
        per_sample = activation_bytes_per_sample(self._suffix)
        return max(1, min(max_batch, budget // per_sample))

    def _chunk_starts(self) -> range:
        return range(0, len(self.data), self._image_chunk)

    def _live(self, start: int) -> tuple[Tensor, ...]:
        images = self.data.images[start : start + self._image_chunk].to(self.device)
        with torch.inference_mode(), exact_float32():
            out = self._prefix(images)
        return tuple(out)

    def evaluate(self, partition: Partition, sets: Sequence[FailureSet]) -> FailureAccuracy:
        counts = self.correct_counts(partition, sets)
        return FailureAccuracy(
            num_devices=partition.num_devices,
            failure_sets=tuple(tuple(sorted(f)) for f in sets),
            accuracy=tuple(float(c) / len(self.data) for c in counts),
        )

    def correct_counts(self, partition: Partition, sets: Sequence[FailureSet]) -> np.ndarray:
        """Correct top-1 predictions per failure set (0 where every device failed)."""
        if list(partition.unit_sizes) != [u.num_neurons for u in self.net.units]:
            raise InvalidParameterError(
                "the partition does not match this model's units "
                f"({partition.num_units} units vs {len(self.net.units)})."
            )
        masks = partition.survival_masks(sets)
        recovery = partition.recovery(sets)
        key_columns = list(masks)
        if recovery is not None:
            key_columns.append(recovery[0][1][:, None] + 1)
        keys, first, inverse = np.unique(
            np.concatenate(key_columns, axis=1), axis=0, return_index=True, return_inverse=True
        )
        intact = np.flatnonzero(keys[:, : sum(m.shape[1] for m in masks)].all(axis=1))
        if recovery is not None:
            intact = intact[keys[intact, -1] == 0]  # no slice rebuilt either
        unique_counts = np.zeros(first.size, dtype=np.int64)
        todo = np.ones(first.size, dtype=bool)
        if intact.size and self._intact_count is not None:
            unique_counts[intact] = self._intact_count
            todo[intact] = False
        unique_counts[todo] = self._count_configs(masks, recovery, first[todo])
        if intact.size:
            self._intact_count = int(unique_counts[intact[0]])
        counts = unique_counts[inverse.reshape(-1)]
        counts[~partition.alive_matrix(sets).any(axis=1)] = 0
        return counts

    def _count_configs(
        self,
        masks: list[np.ndarray],
        recovery: list[tuple[np.ndarray, np.ndarray]] | None,
        rows: np.ndarray,
    ) -> np.ndarray:
        """Correct predictions for the failure sets ``rows``: image chunks outside (their
        prefix runs once), groups of failure sets inside."""
        groups_per_forward = max(1, self._samples_per_forward // self._image_chunk)
        blocks = [
            rows[g : g + groups_per_forward] for g in range(0, rows.size, groups_per_forward)
        ]
        counts = np.zeros(rows.size, dtype=np.int64)
        with torch.inference_mode(), exact_float32():
            for index, start in enumerate(self._chunk_starts()):
                live = self._cached[index] if self._cached else self._live(start)
                labels = self.data.labels[start : start + self._image_chunk].to(self.device)
                offset = 0
                for chosen in blocks:
                    state = _block_state(masks, recovery, chosen, self.device)
                    with self.net.masked(*state):
                        logits = self._suffix(*(repeat_groups(t, chosen.size) for t in live))
                    hits = (logits.argmax(-1).view(chosen.size, -1) == labels).sum(dim=1)
                    counts[offset : offset + chosen.size] += hits.cpu().numpy()
                    offset += chosen.size
        return counts


def _block_state(
    masks: list[np.ndarray],
    recovery: list[tuple[np.ndarray, np.ndarray]] | None,
    chosen: np.ndarray,
    device: torch.device,
) -> tuple[list[Tensor | None], list[tuple[Tensor, Tensor] | None] | None]:
    """The per-unit masks (and CDC recovery) of the failure sets ``chosen``, as tensors on
    ``device``."""
    unit_masks: list[Tensor | None] = [
        torch.from_numpy(m[chosen]).to(device, torch.float32) for m in masks
    ]
    if recovery is None:
        return unit_masks, None
    return unit_masks, [
        (torch.from_numpy(slices).to(device), torch.from_numpy(lost[chosen]).to(device))
        for slices, lost in recovery
    ]
