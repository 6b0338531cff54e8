"""Per-device shards of a state dict, and the whole state dict back from the shards.

A data device's shard holds, under the original state-dict names, the rows of every
per-neuron tensor for the neurons it computes (its share and its replicas, in the sorted
order of `Partition.assignments`), plus every shared tensor whole.

CDC's parity device computes the sum of the data slices' pre-activation outputs (DESIGN 3.4;
`masking.SliceRecovery` recovers a lost slice on the layer's output, before the local ops).
Its shard therefore holds, per unit, the element-wise sum of the data slices' layer rows
(weight and bias), slice ``s`` contributing its ``k``-th neuron to parity row ``k``, shorter
slices padded with zero rows: ``Partition.parity_rows(u)`` rows. A depthwise convolution's
output channels each read their own input channel, so summed rows compute nothing useful:
there the parity keeps the slices' rows side by side, ``[rows, slices, kh, kw]`` (row k, input
s: slice s's k-th neuron), and computes the parity as one grouped convolution over the
gathered input channels; its bias is still the sum. It also holds every local-op
parameter whole (BatchNorm, layer scale: a few values per neuron), because the runtime
decodes on the parity device: it rebuilds a lost slice's pre-activation output and runs that
slice's local ops before sending it on. And it holds every shared tensor (it computes on the
gathered input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from robustdice_core._errors import CorruptFileError
from robustdice_core.bundle._layout import TensorLayout, TensorRole, TensorSpec
from robustdice_core.partition import Partition

__all__ = [
    "assemble_state",
    "check_parity",
    "expected_shapes",
    "parity_tensor",
    "shard_bytes",
    "split_state",
]


def split_state(
    state: Mapping[str, Tensor], layout: TensorLayout, partition: Partition
) -> list[dict[str, Tensor]]:
    """One shard (name -> tensor, contiguous, no shared storage) per device."""
    layout.check_units(partition.unit_sizes)
    return [_device_shard(state, layout, partition, d) for d in range(partition.num_devices)]


def _device_shard(
    state: Mapping[str, Tensor], layout: TensorLayout, partition: Partition, device: int
) -> dict[str, Tensor]:
    shard: dict[str, Tensor] = {}
    parity = device == partition.parity_device
    for spec in layout.tensors:
        tensor = state[spec.name].detach().cpu()
        if spec.role is TensorRole.SHARED:
            shard[spec.name] = tensor.clone().contiguous()
        elif parity and spec.role is TensorRole.LAYER:
            shard[spec.name] = parity_tensor(
                tensor, spec, partition, stacked=layout.is_depthwise(spec.unit)
            )
        elif parity:  # local ops of every slice: the parity device decodes lost slices
            shard[spec.name] = tensor.clone().contiguous()
        else:
            assert spec.unit is not None
            rows = torch.tensor(partition.assignments[spec.unit][device], dtype=torch.long)
            shard[spec.name] = tensor.index_select(spec.dim, rows).contiguous()
    return shard


def parity_tensor(
    tensor: Tensor, spec: TensorSpec, partition: Partition, *, stacked: bool = False
) -> Tensor:
    """The parity rows of a layer tensor: the sum of the data slices, zero-padded; with
    ``stacked`` (a depthwise weight ``[C, 1, kh, kw]``) the slices side by side instead,
    ``[rows, slices, kh, kw]``."""
    assert spec.unit is not None and partition.parity_device is not None
    rows = partition.parity_rows(spec.unit)
    if stacked and tensor.dim() == 4:
        return _stacked_parity(tensor, spec.unit, partition, rows)
    moved = tensor.movedim(spec.dim, 0)
    total = moved.new_zeros((rows, *moved.shape[1:]))
    for device, neurons in enumerate(partition.assignments[spec.unit]):
        if device == partition.parity_device or not neurons:
            continue
        total[: len(neurons)] += moved[list(neurons)]
    return total.movedim(0, spec.dim).contiguous()


def _stacked_parity(tensor: Tensor, unit: int, partition: Partition, rows: int) -> Tensor:
    data = [n for d, n in enumerate(partition.assignments[unit]) if d != partition.parity_device]
    out = tensor.new_zeros((rows, len(data), *tensor.shape[2:]))
    for s, neurons in enumerate(data):
        if neurons:
            out[: len(neurons), s] = tensor[list(neurons), 0]
    return out.contiguous()


def shard_bytes(shard: Mapping[str, Tensor]) -> int:
    """Bytes of a shard's tensor data (what a device keeps in memory for its weights)."""
    return sum(t.numel() * t.element_size() for t in shard.values())


def expected_shapes(
    layout: TensorLayout, partition: Partition, device: int
) -> dict[str, tuple[int, ...]]:
    """The tensors (and their shapes) device ``device``'s shard must hold."""
    shapes: dict[str, tuple[int, ...]] = {}
    parity = device == partition.parity_device
    for spec in layout.tensors:
        if spec.role is TensorRole.SHARED or (parity and spec.role is TensorRole.LOCAL):
            shapes[spec.name] = spec.shape
            continue
        assert spec.unit is not None
        rows = (
            partition.parity_rows(spec.unit)
            if parity
            else len(partition.assignments[spec.unit][device])
        )
        shape = list(spec.shape)
        shape[spec.dim] = rows
        if parity and layout.is_depthwise(spec.unit) and len(shape) == 4:
            shape[1] = partition.num_devices - 1  # the data slices side by side
        shapes[spec.name] = tuple(shape)
    return shapes


def assemble_state(
    layout: TensorLayout,
    partition: Partition,
    shards: Sequence[Mapping[str, Tensor]],
    labels: Sequence[str],
) -> dict[str, Tensor]:
    """The whole state dict from the data devices' shards (``labels[d]`` names device d's
    file in errors). Replicas and shared copies must agree exactly; the parity shard is
    checked separately (`check_parity`)."""
    state: dict[str, Tensor] = {}
    for spec in layout.tensors:
        if spec.role is TensorRole.SHARED:
            state[spec.name] = _shared(spec, shards, labels)
        else:
            state[spec.name] = _rows(spec, partition, shards, labels)
    for scalar in layout.scalars:
        state[scalar.name] = scalar.tensor()
    return {name: state[name] for name in _state_order(layout)}


def _state_order(layout: TensorLayout) -> list[str]:
    return [t.name for t in layout.tensors] + [s.name for s in layout.scalars]


def _shared(
    spec: TensorSpec,
    shards: Sequence[Mapping[str, Tensor]],
    labels: Sequence[str],
) -> Tensor:
    first = shards[0][spec.name]
    for device in range(1, len(shards)):
        if not torch.equal(shards[device][spec.name], first):
            raise CorruptFileError(
                f"`{labels[device]}`: shared tensor `{spec.name}` differs from the copy in "
                f"`{labels[0]}`; every device must hold the same channel-mixing weights."
            )
    return first.clone()


def _rows(
    spec: TensorSpec,
    partition: Partition,
    shards: Sequence[Mapping[str, Tensor]],
    labels: Sequence[str],
) -> Tensor:
    assert spec.unit is not None
    whole = torch.zeros(spec.shape, dtype=spec.torch_dtype).movedim(spec.dim, 0)
    filled = torch.zeros(spec.shape[spec.dim], dtype=torch.bool)
    for device, neurons in enumerate(partition.assignments[spec.unit]):
        if device == partition.parity_device or not neurons:
            continue
        index = torch.tensor(neurons, dtype=torch.long)
        rows = shards[device][spec.name].movedim(spec.dim, 0)
        again = filled[index]
        j = _first_difference(whole[index[again]], rows[again], index[again])
        if j is not None:
            raise CorruptFileError(
                f"`{labels[device]}`: the replica of neuron {j} in `{spec.name}` differs from "
                "another device's copy."
            )
        whole[index] = rows
        filled[index] = True
    return whole.movedim(0, spec.dim).contiguous()


def _first_difference(held: Tensor, other: Tensor, neurons: Tensor) -> int | None:
    """The first neuron whose row in ``other`` differs from the row already ``held``."""
    if held.shape[0] == 0 or torch.equal(held, other):
        return None
    differ = (held != other).reshape(held.shape[0], -1).any(dim=1)
    return int(neurons[differ][0])


def check_parity(
    layout: TensorLayout,
    partition: Partition,
    state: Mapping[str, Tensor],
    shard: Mapping[str, Tensor],
    label: str,
) -> None:
    """The parity shard holds exactly the sums of the reassembled data slices."""
    for spec in layout.tensors:
        if spec.role is not TensorRole.LAYER:
            continue
        stacked = layout.is_depthwise(spec.unit)
        expected = parity_tensor(state[spec.name], spec, partition, stacked=stacked)
        if not torch.allclose(shard[spec.name], expected, rtol=1e-6, atol=1e-6):
            raise CorruptFileError(
                f"`{label}`: parity tensor `{spec.name}` is not the sum of the data slices' rows."
            )
