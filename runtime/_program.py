"""`NodeProgram`: what one node computes, as a generator that pauses at every sync point.

A node holds the whole graph (every device runs the channel-mixing operations on the gathered
tensors, DESIGN 3.1) but only its shard's rows of each unit's layer and local ops. Running an
image walks the traced graph node by node; at each unit's sync point the generator yields a
`UnitStep` (the node's partial output, and for CDC the layer's pre-activation output) and is
resumed with the gathered tensor. The engine interleaves several images' generators, so one
image's communication overlaps another's computation.

The CDC parity device computes only its summed layer rows at each unit (it runs no local ops);
`NodeProgram.decode` rebuilds a lost data slice from them (parity minus the survivors'
pre-activation outputs) and runs that slice's local ops with the slice's own parameters.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from robustdice_core import InvalidParameterError, UnsupportedModelError
from robustdice_core.bundle import TensorLayout, TensorRole
from robustdice_core.partition import Partition
from robustdice_core.units import TracedModel, Unit, UnitKind

__all__ = ["NodeProgram", "UnitStep"]


@dataclass(frozen=True)
class UnitStep:
    """What a node yields at unit ``unit``'s sync point.

    ``partial``: the node's own neurons of the sync output, ``[B, k, ...]`` with the neurons on
    the unit's channel axis (None on the CDC parity device). ``preact``: CDC only, the layer's
    output before the local ops (data devices: their rows; parity device: its parity rows),
    with the neurons on the layer's channel axis.
    """

    unit: int
    partial: Tensor | None
    preact: Tensor | None = None


ImageRun = Generator[UnitStep, Tensor, Tensor]


class _RowConv(nn.Module):
    """A grouped convolution restricted to some output channels: each kept channel reads its
    own input group, so the kept rows form a new grouped convolution on gathered inputs."""

    def __init__(self, conv: nn.Conv2d, rows: Sequence[int], weight: Tensor, bias: Tensor | None):
        super().__init__()
        per_group_out = conv.out_channels // conv.groups
        per_group_in = conv.in_channels // conv.groups
        groups = [r // per_group_out for r in rows]
        index = [g * per_group_in + i for g in groups for i in range(per_group_in)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, max(1, len(rows))

    index: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x.index_select(1, self.index), self.weight, self.bias, self.stride, self.padding,
            self.dilation, self.groups,
        )  # fmt: skip


class _StackedParityConv(nn.Module):
    """CDC parity of a depthwise convolution: parity row k is the sum over the data slices of
    their k-th channel's convolution, i.e. one grouped convolution (a group per row) over the
    gathered input channels, with the slices' rows side by side (``[rows, slices, kh, kw]``)."""

    index: Tensor

    def __init__(
        self, conv: nn.Conv2d, slices: Sequence[Sequence[int]], weight: Tensor, bias: Tensor | None
    ):
        super().__init__()
        rows = weight.shape[0]
        index = [
            (slice_[k] if k < len(slice_) else 0) for k in range(rows) for slice_ in slices
        ]  # a missing neuron reads channel 0 with a zero weight
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, max(1, rows)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x.index_select(1, self.index), self.weight, self.bias, self.stride, self.padding,
            self.dilation, self.groups,
        )  # fmt: skip


@dataclass(frozen=True)
class _Step:
    """One graph node, resolved once: how to compute it and when its inputs die."""

    node: fx.Node
    call: Callable[..., Any] | None  # None: placeholder / output / get_attr
    unit_start: int | None  # the unit whose layer this node is
    chain_of: int | None  # the unit whose local op (or sync) this node is
    sync_of: int | None  # the unit whose sync point this node is
    frees: tuple[fx.Node, ...]  # values last used here


class NodeProgram:
    """The graph of one node: its shard's rows, run image by image (`run`)."""

    def __init__(
        self,
        traced: TracedModel,
        shard: Mapping[str, Tensor],
        layout: TensorLayout,
        partition: Partition,
        rank: int,
    ) -> None:
        if [u.num_neurons for u in traced.units] != list(partition.unit_sizes):
            raise InvalidParameterError(
                "the bundle's partition does not match the model's units "
                f"({partition.num_units} units vs {len(traced.units)})."
            )
        self.rank = rank
        self.units: tuple[Unit, ...] = traced.units
        self.partition = partition
        self.is_parity = rank == partition.parity_device
        self.cdc = partition.parity_device is not None
        self.layout = layout
        self._gm = traced.graph_module
        self._shard = dict(shard)
        self._rows = [
            () if self.is_parity else tuple(partition.assignments[u][rank])
            for u in range(partition.num_units)
        ]
        self._load_shard()
        self._steps = self._resolve()
        self._decoders: dict[tuple[int, int], Callable[[Tensor], Tensor]] = {}
        self.layer_channel_dim = tuple(_layer_channel_dim(u) for u in self.units)

    # ----------------------------------------------------------------- building
    def _load_shard(self) -> None:
        """Put the shard's tensors into the graph; per-unit layers become their rows."""
        specs = {t.name: t for t in self.layout.tensors}
        for unit in self.units:
            module = self._gm.get_submodule(unit.name)
            if isinstance(module, nn.Conv2d) and module.groups > 1:
                weight = self._shard.pop(f"{unit.name}.weight")
                bias = self._shard.pop(f"{unit.name}.bias", None)
                self._set_module(unit.name, self._grouped(unit, module, weight, bias))
        for name, tensor in self._shard.items():
            if name not in specs:
                raise InvalidParameterError(f"the shard's tensor `{name}` is not in the layout.")
            owner, _, attr = name.rpartition(".")
            module = self._gm.get_submodule(owner)
            if attr in module._parameters:
                module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
            else:
                module._buffers[attr] = tensor

    def _grouped(
        self, unit: Unit, conv: nn.Conv2d, weight: Tensor, bias: Tensor | None
    ) -> nn.Module:
        """A grouped convolution's rows; on the CDC parity device, a depthwise one's parity."""
        if not self.is_parity:
            return _RowConv(conv, self._rows[unit.index], weight, bias)
        if not self.layout.is_depthwise(unit.index):
            raise UnsupportedModelError(
                f"CDC's parity of grouped convolution `{unit.name}` (groups {conv.groups}, not "
                "depthwise) is not supported; deploy another method for this model."
            )
        slices = [
            n for d, n in enumerate(self.partition.assignments[unit.index]) if d != self.rank
        ]
        return _StackedParityConv(conv, slices, weight, bias)

    def _set_module(self, target: str, module: nn.Module) -> None:
        parent, _, name = target.rpartition(".")
        setattr(self._gm.get_submodule(parent) if parent else self._gm, name, module)

    def _resolve(self) -> list[_Step]:
        nodes = list(self._gm.graph.nodes)
        by_name = {n.name: n for n in nodes}
        starts = {by_name[u.linear_node]: u.index for u in self.units}
        syncs = {by_name[u.sync_node]: u.index for u in self.units}
        chains = {by_name[op]: u.index for u in self.units for op in u.local_ops}
        last_use: dict[fx.Node, fx.Node] = {}
        for node in nodes:
            for arg in node.all_input_nodes:
                last_use[arg] = node
        dies: dict[fx.Node, list[fx.Node]] = {}
        for value, user in last_use.items():
            dies.setdefault(user, []).append(value)
        return [
            _Step(
                node=node,
                call=self._callable(node),
                unit_start=starts.get(node),
                chain_of=chains.get(node),
                sync_of=syncs.get(node),
                frees=tuple(dies.get(node, ())),
            )
            for node in nodes
        ]

    def _callable(self, node: fx.Node) -> Callable[..., Any] | None:
        if node.op == "call_module":
            return self._gm.get_submodule(str(node.target))
        if node.op == "call_function":
            return node.target  # type: ignore[return-value]
        if node.op == "call_method":
            name = str(node.target)
            return lambda obj, *args, **kwargs: getattr(obj, name)(*args, **kwargs)
        return None

    # ----------------------------------------------------------------- running
    def run(self, image: Tensor) -> ImageRun:
        """Compute one input batch; yields at every sync point, returns the logits."""
        env: dict[fx.Node, Any] = {}
        preact: Tensor | None = None
        for step in self._steps:
            node = step.node
            unit = step.unit_start if step.unit_start is not None else step.chain_of
            if node.op == "placeholder":
                env[node] = image
            elif node.op == "get_attr":
                env[node] = _attribute(self._gm, str(node.target))
            elif node.op == "output":
                output: Tensor = fx.node.map_arg(node.args[0], lambda n: env[n])  # type: ignore[assignment]
                return output
            elif unit is None or self._computes(unit, layer=step.unit_start is not None):
                env[node] = self._compute(step, env)
                if step.unit_start is not None and self.cdc:
                    # kept as the pre-activation output (in-place local ops follow)
                    preact = env[node] if self.is_parity else env[node].clone()
            if step.sync_of is not None:
                partial = None if self.is_parity else self._partial(step.sync_of, env, node, image)
                env[node] = yield UnitStep(step.sync_of, partial, preact)
                preact = None
            for value in step.frees:
                env.pop(value, None)
        raise InvalidParameterError("the traced graph has no output node.")

    def _computes(self, unit: int, *, layer: bool) -> bool:
        """Whether this node runs a unit's layer (``layer``) or local op: the parity device
        runs only the layer (its parity rows), a data device without rows of it nothing."""
        if self.is_parity:
            return layer
        return bool(self._rows[unit])

    def _compute(self, step: _Step, env: dict[fx.Node, Any]) -> Any:
        node = step.node
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        assert step.call is not None
        return step.call(*args, **kwargs)

    def _partial(self, unit: int, env: dict[fx.Node, Any], sync: fx.Node, image: Tensor) -> Tensor:
        u = self.units[unit]
        if self._rows[unit]:
            return env[sync]
        shape = [image.shape[0], *u.sync_shape]  # no rows here: an empty slice
        shape[u.channel_dim] = 0
        return image.new_zeros(shape)

    # ----------------------------------------------------------------- CDC decoding
    def decode(self, unit: int, lost_device: int, preact: Tensor) -> Tensor:
        """The sync output of ``lost_device``'s slice of ``unit`` from its rebuilt
        pre-activation output ``preact`` (parity device only)."""
        key = (unit, lost_device)
        if key not in self._decoders:
            self._decoders[key] = self._decoder(unit, lost_device)
        return self._decoders[key](preact)

    def _decoder(self, unit: int, device: int) -> Callable[[Tensor], Tensor]:
        """The unit's local ops with ``device``'s rows of every per-channel parameter."""
        u = self.units[unit]
        rows = torch.tensor(self.partition.assignments[unit][device], dtype=torch.long)
        local = {
            t.name: self._gm.get_parameter(t.name)
            if _is_parameter(self._gm, t.name)
            else self._gm.get_buffer(t.name)
            for t in self.layout.of_unit(unit)
            if t.role is TensorRole.LOCAL
        }
        dims = {t.name: t.dim for t in self.layout.of_unit(unit)}
        by_name = {n.name: n for n in self._gm.graph.nodes}
        chain = [by_name[name] for name in u.local_ops]
        modules: dict[str, nn.Module] = {}
        for node in chain:
            if node.op == "call_module":
                target = str(node.target)
                module = copy.deepcopy(self._gm.get_submodule(target))
                for name, full in local.items():
                    owner, _, attr = name.rpartition(".")
                    if owner == target:
                        sliced = full.detach().index_select(dims[name], rows)
                        if attr in module._parameters:
                            module._parameters[attr] = nn.Parameter(sliced, requires_grad=False)
                        else:
                            module._buffers[attr] = sliced
                modules[target] = module
        attrs = {
            name: full.detach().index_select(dims[name], rows) for name, full in local.items()
        }
        linear = by_name[u.linear_node]

        def run(preact: Tensor) -> Tensor:
            env: dict[fx.Node, Any] = {linear: preact}
            for node in chain:
                for arg in node.all_input_nodes:
                    if arg.op == "get_attr" and arg not in env:
                        target = str(arg.target)
                        env[arg] = attrs.get(target, _attribute(self._gm, target))
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                if node.op == "call_module":
                    env[node] = modules[str(node.target)](*args, **kwargs)
                elif node.op == "call_function":
                    env[node] = node.target(*args, **kwargs)
                else:
                    env[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
            return env[by_name[u.sync_node]]

        return run

    def rows(self, unit: int) -> tuple[int, ...]:
        """The neurons of ``unit`` this node computes (sorted; none on the parity device)."""
        return self._rows[unit]


def _layer_channel_dim(unit: Unit) -> int:
    """The neuron axis of a unit's layer output: channels (conv), the last axis (linear)."""
    return -1 if unit.kind is UnitKind.LINEAR else 1


def _attribute(gm: nn.Module, target: str) -> Any:
    return operator.attrgetter(target)(gm)


def _is_parameter(gm: nn.Module, name: str) -> bool:
    owner, _, attr = name.rpartition(".")
    return attr in gm.get_submodule(owner)._parameters
