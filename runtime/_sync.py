"""Data sync: which neurons a node sends each peer at a sync point, and the gathered tensor.

At unit u, data device s sends peer r the neurons of its share that r does not compute itself
(the cost model's ``Exchange.MISSING``), in sorted order; the receiver knows which neurons
they are from the partition, so no index list travels. Neurons that no alive device sent stay
zero (DESIGN 3.5's failure semantics). CDC: the parity device computes no sync output of its
own; with one data device down it sends that device's slice, rebuilt, with explicit indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from robustdice_core.partition import Partition
from robustdice_core.units import Unit

__all__ = ["SyncPlan", "assemble"]


@dataclass(frozen=True)
class _Pair:
    positions: Tensor  # rows of the sender's partial to send (indices into its share)
    neurons: Tensor  # the same neurons' ids in the unit
    everything: bool  # the receiver gets the sender's whole share (no selection needed)


class SyncPlan:
    """Per unit and (sender, receiver): what travels. Built once per node from the partition."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition
        self.num_devices = partition.num_devices
        self.parity = partition.parity_device
        self._pairs: dict[tuple[int, int, int], _Pair] = {}
        for u in range(partition.num_units):
            holdings = [frozenset(n) for n in partition.assignments[u]]
            for s in self.data_devices:
                share = partition.assignments[u][s]
                for r in range(self.num_devices):
                    if r == s:
                        continue
                    held = frozenset() if r == self.parity else holdings[r]
                    keep = [i for i, n in enumerate(share) if n not in held]
                    self._pairs[(u, s, r)] = _Pair(
                        positions=torch.tensor(keep, dtype=torch.long),
                        neurons=torch.tensor([share[i] for i in keep], dtype=torch.long),
                        everything=len(keep) == len(share),
                    )

    @property
    def data_devices(self) -> list[int]:
        return [d for d in range(self.num_devices) if d != self.parity]

    def sends(self, unit: int, sender: int, receiver: int) -> int:
        """How many neurons ``sender`` sends ``receiver`` at ``unit`` (0: no message)."""
        pair = self._pairs.get((unit, sender, receiver))
        return 0 if pair is None else int(pair.neurons.numel())

    def outgoing(self, unit: int, sender: int, receiver: int, partial: Tensor, dim: int) -> Tensor:
        """The part of ``sender``'s partial that ``receiver`` gets, neurons on ``dim``."""
        pair = self._pairs[(unit, sender, receiver)]
        return partial if pair.everything else partial.index_select(dim, pair.positions)

    def incoming_neurons(self, unit: int, sender: int, receiver: int) -> Tensor:
        return self._pairs[(unit, sender, receiver)].neurons

    def lost_data_device(self, down: frozenset[int]) -> int | None:
        """CDC: the one data device whose slice the parity rebuilds (parity up, exactly one
        data device down), else None."""
        if self.parity is None or self.parity in down:
            return None
        lost = [d for d in self.data_devices if d in down]
        return lost[0] if len(lost) == 1 else None


def assemble(
    unit: Unit,
    batch: int,
    dtype: torch.dtype,
    own: tuple[Tensor, Tensor] | None,
    received: Mapping[int, tuple[Tensor, Tensor]],
) -> Tensor:
    """The gathered sync output ``[B, *sync_shape]``: ``own`` and every received part as
    ``(neuron ids, data with neurons on the unit's channel axis)``; the rest stays zero."""
    shape = [batch, *unit.sync_shape]
    full = torch.zeros(shape, dtype=dtype)
    dim = unit.channel_dim
    parts = ([own] if own is not None else []) + list(received.values())
    for neurons, data in parts:
        if neurons.numel():
            full.index_copy_(dim, neurons, data.to(dtype))
    return full


def rebuild_lost_slice(parity: Tensor, survivors: list[Tensor], rows: int, dim: int) -> Tensor:
    """A lost slice's pre-activation output: parity minus the surviving slices, each padded
    to the parity's rows along ``dim`` and cut back to the lost slice's ``rows``."""
    total = parity.clone()
    for part in survivors:
        k = part.shape[dim]
        total.narrow(dim, 0, k).sub_(part)
    return total.narrow(dim, 0, rows)
