"""A traced model with per-unit mask (and CDC recovery) hooks, and graph splitting.

`MaskedNetwork` inserts, for every unit, a `NeuronMask` right after the sync point (missing
neurons are zero *after* BatchNorm, DESIGN 3.1) and a `SliceRecovery` right after the layer's
pre-activation output (CDC's parity-minus-survivors recovery, DESIGN 3.4). Masks are given per
*group* of consecutive samples, so one batched forward evaluates many failure sets: the batch
is ``G`` groups of ``B / G`` images, and group ``g`` uses ``mask[g]``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.fx as fx
from torch import Tensor, nn

from robustdice_core.units import TracedModel, Unit, UnitKind

__all__ = [
    "MaskedNetwork",
    "NeuronMask",
    "SliceRecovery",
    "activation_bytes_per_sample",
    "repeat_groups",
    "split_graph",
]


class NeuronMask(nn.Module):
    """Multiplies the sync output by a per-group 0/1 mask over the neuron axis."""

    def __init__(self, channel_dim: int) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.mask: Tensor | None = None  # [G, C], float

    def forward(self, x: Tensor) -> Tensor:
        mask = self.mask
        if mask is None:
            return x
        groups, channels = mask.shape
        grouped = x.unflatten(0, (groups, -1))
        shape = [groups] + [1] * (x.dim())
        shape[self.channel_dim + 1] = channels
        return (grouped * mask.view(shape)).flatten(0, 1)


class SliceRecovery(nn.Module):
    """CDC: rebuilds one lost data slice of the pre-activation output as parity - survivors.

    ``slices`` is ``[S, L]`` neuron indices of the ``S`` data slices, padded with ``C`` (a zero
    column); ``lost`` is ``[G]``: the lost slice of each group, or -1 for none.
    """

    def __init__(self, channel_dim: int) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.slices: Tensor | None = None
        self.lost: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.slices is None or self.lost is None or not bool((self.lost >= 0).any()):
            return x
        slices, lost = self.slices, self.lost
        groups = lost.shape[0]
        y = x.unflatten(0, (groups, -1)).movedim(self.channel_dim + 1, -1)
        padded = torch.cat([y, y.new_zeros((*y.shape[:-1], 1))], dim=-1)
        chosen = (lost >= 0).nonzero().flatten()
        sel = padded[chosen]  # [G', b, ..., C + 1]
        parts = sel[..., slices]  # [G', b, ..., S, L]
        parity = parts.sum(dim=-2)
        keep = torch.ones(chosen.numel(), slices.shape[0], dtype=x.dtype, device=x.device)
        keep[torch.arange(chosen.numel()), lost[chosen]] = 0
        keep = keep.view(chosen.numel(), *([1] * (parts.dim() - 3)), slices.shape[0], 1)
        recovered = parity - (parts * keep).sum(dim=-2)  # [G', b, ..., L]
        index = slices[lost[chosen]]  # [G', L]
        index = index.view(chosen.numel(), *([1] * (recovered.dim() - 2)), -1)
        sel = sel.scatter(-1, index.expand_as(recovered), recovered)
        padded = padded.index_copy(0, chosen, sel)
        out = padded[..., :-1].movedim(-1, self.channel_dim + 1)
        return out.flatten(0, 1).contiguous()


class MaskedNetwork(nn.Module):
    """A traced model whose units can be masked per sample group."""

    def __init__(self, traced: TracedModel) -> None:
        super().__init__()
        self.units: tuple[Unit, ...] = traced.units
        self.example_shape = traced.example_shape
        gm = copy.deepcopy(traced.graph_module)
        self.masks = nn.ModuleList(NeuronMask(u.channel_dim) for u in self.units)
        self.recoveries = nn.ModuleList(
            SliceRecovery(_layer_channel_dim(gm, u)) for u in self.units
        )
        for unit, mask, recovery in zip(self.units, self.masks, self.recoveries, strict=True):
            _insert_after(gm, unit.sync_node, f"rd_mask_{unit.index}", mask)
            _insert_after(gm, unit.linear_node, f"rd_recover_{unit.index}", recovery)
        gm.graph.lint()
        gm.recompile()
        self.graph_module = gm

    def forward(self, x: Tensor) -> Tensor:
        return self.graph_module(x)

    @contextmanager
    def masked(
        self,
        masks: Sequence[Tensor | None] | None = None,
        recovery: Sequence[tuple[Tensor, Tensor] | None] | None = None,
    ) -> Iterator[MaskedNetwork]:
        """Set per-unit masks ``[G, C_i]`` and CDC recovery ``(slices, lost)`` for a block."""
        if masks is not None and len(masks) != len(self.units):
            raise ValueError(f"expected {len(self.units)} masks, got {len(masks)}.")
        try:
            for i, module in enumerate(self.masks):
                assert isinstance(module, NeuronMask)
                module.mask = None if masks is None else masks[i]
            for i, module in enumerate(self.recoveries):
                assert isinstance(module, SliceRecovery)
                spec = None if recovery is None else recovery[i]
                module.slices, module.lost = (None, None) if spec is None else spec
            yield self
        finally:
            for module in self.masks:
                module.mask = None  # type: ignore[assignment]
            for module in self.recoveries:
                module.slices = module.lost = None  # type: ignore[assignment]

    def node_shape(self, node_name: str) -> tuple[int, ...]:
        """Output shape of a node for one image (batch dim dropped), from shape propagation."""
        node = next(n for n in self.graph_module.graph.nodes if n.name == node_name)
        return tuple(int(s) for s in node.meta["tensor_meta"].shape[1:])

    def split_after(self, node_name: str) -> tuple[fx.GraphModule, fx.GraphModule]:
        """Split at a node: ``prefix(x) -> live values`` and ``suffix(*live) -> output``."""
        return split_graph(self.graph_module, node_name)


def _layer_channel_dim(gm: fx.GraphModule, unit: Unit) -> int:
    node = next(n for n in gm.graph.nodes if n.name == unit.linear_node)
    ndim = len(node.meta["tensor_meta"].shape)
    return 1 if unit.kind is not UnitKind.LINEAR else ndim - 1


def _insert_after(gm: fx.GraphModule, node_name: str, target: str, module: nn.Module) -> None:
    node = next(n for n in gm.graph.nodes if n.name == node_name)
    gm.add_submodule(target, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(target, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    new.meta = dict(node.meta)


def split_graph(gm: fx.GraphModule, node_name: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Cut ``gm`` right after ``node_name`` into a prefix and a suffix sharing its modules.

    The prefix returns a tuple of every value computed up to the cut that is used after it
    (e.g. a residual branch), and the suffix takes them as its inputs, in the same order.
    """
    nodes = list(gm.graph.nodes)
    cut = next(i for i, n in enumerate(nodes) if n.name == node_name) + 1
    before = nodes[:cut]
    before_set = set(before)
    live = [
        n for n in before if n.op != "get_attr" and any(user not in before_set for user in n.users)
    ]

    prefix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in before:
        env[node] = prefix.node_copy(node, lambda n: env[n])
    prefix.output(tuple(env[n] for n in live))

    suffix = fx.Graph()
    senv: dict[fx.Node, fx.Node] = {n: suffix.placeholder(f"live_{n.name}") for n in live}
    for node in before:
        if node.op == "get_attr" and any(user not in before_set for user in node.users):
            senv[node] = suffix.node_copy(node, lambda n: senv[n])
    for node in nodes[cut:]:
        senv[node] = suffix.node_copy(node, lambda n: senv[n])
    return fx.GraphModule(gm, prefix), fx.GraphModule(gm, suffix)


def repeat_groups(tensor: Tensor, groups: int) -> Tensor:
    """``[B, ...] -> [groups * B, ...]``, group-major: sample ``g * B + b`` is image ``b``.

    Always a new tensor (also for one group): the caller's copy may be a cache, and the
    network may run in-place activations on its input.
    """
    if groups == 1:
        return tensor.clone()
    return tensor.unsqueeze(0).expand(groups, *tensor.shape).reshape(-1, *tensor.shape[1:])


def activation_bytes_per_sample(gm: fx.GraphModule, *, live_factor: int = 3) -> int:
    """A bound on one sample's activation memory in a forward of ``gm``: its largest float32
    tensor, times the few such tensors alive at once (input, output, a residual)."""
    largest = max(
        (
            math.prod(node.meta["tensor_meta"].shape[1:])
            for node in gm.graph.nodes
            if hasattr(node.meta.get("tensor_meta"), "shape")
        ),
        default=1,
    )
    return live_factor * 4 * int(largest)
