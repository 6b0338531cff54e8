"""`ModelCostInfo`: the per-unit figures the cost model needs, computed once per model.

Everything that depends only on the model (not on the partition) is extracted from the traced
graph here, as numpy arrays, so that `estimate_costs` is a few vectorised operations over a
partition's per-device neuron counts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from robustdice_core.costs._ops import input_elements, is_alias, node_elements, node_flops
from robustdice_core.units import TracedModel, UnitKind

__all__ = ["ModelCostInfo"]


@dataclass(frozen=True, eq=False)
class ModelCostInfo:
    """Per-unit arrays (length U) plus the redundant channel-mixing work between sync points.

    Element counts are per image. ``mixing_*[s]`` is the channel-mixing work that every
    device runs on the gathered tensor before unit ``s`` (``s == U``: after the last unit).
    ``act_full[p]`` and ``act_partial[p, u]`` give the live activation elements at step ``p``
    of the graph: tensors every device holds whole, and tensors of unit ``u`` that a device
    holds in proportion to its share of that unit's neurons.
    """

    unit_names: tuple[str, ...]
    num_neurons: np.ndarray  # [U] int64
    params_per_neuron: np.ndarray  # [U] weights + bias + per-channel params (BN, layer scale)
    linear_params_per_neuron: np.ndarray  # [U] the layer's own weights + bias (CDC parity row)
    macs_per_neuron: np.ndarray  # [U]
    local_flops_per_neuron: np.ndarray  # [U] channel-local ops inside the unit (BN, ReLU, pool)
    sync_elements_per_neuron: np.ndarray  # [U] values one neuron adds to the gathered tensor
    linear_elements_per_neuron: np.ndarray  # [U] pre-activation outputs (what CDC parity sends)
    input_elements: np.ndarray  # [U] elements of the layer's (gathered) input tensor
    mixing_flops: np.ndarray  # [U + 1]
    mixing_traffic_elements: np.ndarray  # [U + 1] elements read + written by mixing ops
    mixing_params: int  # parameters of channel-mixing layers (LayerNorm, ...): on every device
    act_full: np.ndarray  # [P]
    act_partial: np.ndarray  # [P, U]
    depthwise: np.ndarray | None = None  # [U] bool: the layer is a depthwise convolution
    bias_per_neuron: np.ndarray | None = None  # [U] 1 where the layer has a bias

    @property
    def num_units(self) -> int:
        return len(self.unit_names)

    @property
    def total_params(self) -> int:
        """Parameters of the whole model (incl. BN running statistics)."""
        return int(self.num_neurons @ self.params_per_neuron) + self.mixing_params

    @property
    def total_flops(self) -> float:
        """FLOPs of one unpartitioned forward pass."""
        per_neuron = 2 * self.macs_per_neuron + self.local_flops_per_neuron
        return float(self.num_neurons @ per_neuron + self.mixing_flops.sum())

    def activation_elements(self, fractions: np.ndarray) -> np.ndarray:
        """Peak live activation elements per device, given ``fractions[u, d]`` of each unit."""
        return (self.act_full[:, None] + self.act_partial @ fractions).max(axis=0)

    @classmethod
    def from_traced(cls, traced: TracedModel) -> ModelCostInfo:
        """Extract the cost figures of a traced model (shapes must be propagated)."""
        gm = traced.graph_module
        nodes = list(gm.graph.nodes)
        by_name = {n.name: n for n in nodes}
        owner = _owners(traced)
        units = traced.units
        sizes = np.array([u.num_neurons for u in units], dtype=np.int64)
        local = [sum(node_flops(gm, by_name[name]) for name in u.local_ops) for u in units]
        linear = [by_name[u.linear_node] for u in units]
        mixing_flops, mixing_traffic = _mixing_work(gm, nodes, owner, traced)
        act_full, act_partial = _activation_profile(gm, nodes, owner, traced)
        return cls(
            unit_names=tuple(u.name for u in units),
            num_neurons=sizes,
            params_per_neuron=np.array([u.params_per_neuron for u in units], dtype=np.int64),
            linear_params_per_neuron=np.array(
                [_linear_params(gm.get_submodule(u.name)) for u in units], dtype=np.int64
            ),
            macs_per_neuron=np.array([u.macs_per_neuron for u in units], dtype=np.int64),
            local_flops_per_neuron=np.array(local, dtype=np.float64) / sizes,
            sync_elements_per_neuron=np.array(
                [u.sync_elements_per_neuron for u in units], dtype=np.int64
            ),
            linear_elements_per_neuron=np.array(
                [node_elements(n) // u.num_neurons for n, u in zip(linear, units, strict=True)],
                dtype=np.int64,
            ),
            input_elements=np.array([input_elements(n) for n in linear], dtype=np.int64),
            mixing_flops=mixing_flops,
            mixing_traffic_elements=mixing_traffic,
            mixing_params=_mixing_params(gm, nodes, owner),
            act_full=act_full,
            act_partial=act_partial,
            depthwise=np.array([u.kind is UnitKind.DEPTHWISE_CONV for u in units], dtype=bool),
            bias_per_neuron=np.array(
                [getattr(gm.get_submodule(u.name), "bias", None) is not None for u in units],
                dtype=np.int64,
            ),
        )

    def parity_row_params(self, slices: int) -> np.ndarray:
        """``[U]`` parameters of one CDC parity row: the layer's weight row and bias, or for a
        depthwise layer ``slices`` weight rows side by side and one (summed) bias."""
        bias = (
            self.bias_per_neuron
            if self.bias_per_neuron is not None
            else np.zeros(self.num_units, dtype=np.int64)
        )
        weights = self.linear_params_per_neuron - bias
        return self.parity_factor(slices) * weights + bias

    def parity_factor(self, slices: int) -> np.ndarray:
        """``[U]`` CDC parity work per row, in data rows: 1 (summed rows), or ``slices`` for a
        depthwise layer (its slices' rows side by side, see `bundle` shards)."""
        depthwise = self.depthwise if self.depthwise is not None else np.zeros(self.num_units)
        return np.where(depthwise, slices, 1)


def _linear_params(layer: nn.Module) -> int:
    """One neuron's parameters in the Conv2d / Linear itself: its weight row and bias."""
    weight = layer.get_parameter("weight")
    return weight[0].numel() + (1 if getattr(layer, "bias", None) is not None else 0)


def _owners(traced: TracedModel) -> dict[str, int]:
    """Node name -> unit index, for every node computed per neuron (layer and local ops)."""
    owner: dict[str, int] = {}
    for unit in traced.units:
        for name in (unit.linear_node, *unit.local_ops):
            owner[name] = unit.index
    return owner


def _is_compute(node: fx.Node) -> bool:
    return node.op in ("call_module", "call_function", "call_method")


def _mixing_work(
    gm: fx.GraphModule, nodes: list[fx.Node], owner: dict[str, int], traced: TracedModel
) -> tuple[np.ndarray, np.ndarray]:
    """FLOPs and memory traffic of the channel-mixing nodes, binned by the next unit."""
    syncs = {u.sync_node for u in traced.units}
    flops = np.zeros(len(traced.units) + 1, dtype=np.float64)
    traffic = np.zeros(len(traced.units) + 1, dtype=np.float64)
    stage = 0
    for node in nodes:
        if _is_compute(node) and node.name not in owner:
            flops[stage] += node_flops(gm, node)
            if not is_alias(gm, node):
                traffic[stage] += input_elements(node) + node_elements(node)
        if node.name in syncs:
            stage += 1
    return flops, traffic


def _mixing_params(gm: fx.GraphModule, nodes: list[fx.Node], owner: dict[str, int]) -> int:
    """Parameters (and 1-d buffers such as BN statistics) outside the units."""
    seen: set[str] = set()
    count = 0
    for node in nodes:
        target = str(node.target)
        if target in seen or node.name in owner:
            continue
        if node.op == "call_module":
            module = gm.get_submodule(target)
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            count += sum(p.numel() for p in module.parameters())
            count += sum(b.numel() for b in module.buffers() if b.dim() >= 1)
        elif node.op == "get_attr" and any(user.name not in owner for user in node.users):
            value = functools.reduce(getattr, target.split("."), gm)
            count += value.numel() if isinstance(value, torch.Tensor) else 0
        else:
            continue
        seen.add(target)
    return count


def _activation_profile(
    gm: fx.GraphModule, nodes: list[fx.Node], owner: dict[str, int], traced: TracedModel
) -> tuple[np.ndarray, np.ndarray]:
    """Live activation elements at every buffer allocation: whole and per-unit partial.

    A node allocates a buffer unless it is a view or in-place op of its input; a sync node
    always allocates the gathered (whole) tensor. A buffer lives from its allocation to the
    last node that reads it or any view of it.
    """
    syncs = {u.sync_node for u in traced.units}
    buffer_of: dict[str, int] = {}
    created: list[int] = []
    ends: list[int] = []
    size: list[int] = []
    unit: list[int] = []
    for step, node in enumerate(nodes):
        if node.op in ("get_attr", "output"):
            for arg in node.all_input_nodes:
                if arg.name in buffer_of:
                    ends[buffer_of[arg.name]] = step
            continue
        for arg in node.all_input_nodes:
            if arg.name in buffer_of:
                ends[buffer_of[arg.name]] = step
        first = next(iter(node.all_input_nodes), None)
        aliased = node.name not in syncs and first is not None and is_alias(gm, node)
        if aliased and first is not None and first.name in buffer_of:
            buffer_of[node.name] = buffer_of[first.name]
            continue
        buffer_of[node.name] = len(created)
        created.append(step)
        ends.append(step)
        size.append(node_elements(node))
        unit.append(-1 if node.name in syncs else owner.get(node.name, -1))
    return _live_matrix(created, ends, size, unit, len(traced.units))


def _live_matrix(
    created: list[int], ends: list[int], size: list[int], unit: list[int], num_units: int
) -> tuple[np.ndarray, np.ndarray]:
    c, e = np.array(created), np.array(ends)
    s, u = np.array(size, dtype=np.float64), np.array(unit)
    steps = np.unique(c)
    live = (c[None, :] <= steps[:, None]) & (e[None, :] >= steps[:, None])  # [P, B]
    whole = live[:, u < 0] @ s[u < 0]
    owned = np.zeros((len(s), num_units))
    rows = np.flatnonzero(u >= 0)
    owned[rows, u[rows]] = s[rows]
    return whole, live.astype(np.float64) @ owned
