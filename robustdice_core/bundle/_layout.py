"""`TensorLayout`: which state-dict entries are per neuron (and of which unit), which are shared.

Derived once from the traced model (DESIGN 3.1), stored in the manifest, so that a board
(and `reassemble`) never needs to trace the model again:

- ``layer``: the weight and bias of a unit's Conv2d / Linear; row j belongs to neuron j. The
  CDC parity device holds the element-wise sum of the data slices' rows of these.
- ``local``: a per-channel parameter or buffer of one of the unit's channel-local ops
  (BatchNorm weight, bias, running mean and variance; ConvNeXt's layer scale), indexed by
  neuron along ``dim``.
- ``shared``: everything else with at least one dimension (LayerNorms, non-unit layers): the
  channel-mixing parameters every device holds whole.
- scalars: 0-d entries (BatchNorm's ``num_batches_tracked``, a training counter that no
  forward pass reads) travel in the manifest as plain numbers, not in the shards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor

from robustdice_core._errors import CorruptFileError, UnsupportedModelError
from robustdice_core.bundle._fields import (
    get_float,
    get_int,
    get_list,
    get_optional_int,
    get_str,
    where,
)
from robustdice_core.units import TracedModel, Unit, UnitKind

__all__ = ["ScalarEntry", "TensorLayout", "TensorRole", "TensorSpec", "plan_layout"]

# The dtypes a shard may hold, by the name the manifest uses (``str(dtype)`` less "torch.").
DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


class TensorRole(StrEnum):
    """How a state-dict entry is spread over the devices (see the module docstring)."""

    LAYER = "layer"
    LOCAL = "local"
    SHARED = "shared"


@dataclass(frozen=True)
class TensorSpec:
    """One state-dict entry of the whole model: its shape, dtype and role."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    role: TensorRole
    unit: int | None = None  # the unit whose neurons index ``dim`` (layer and local roles)
    dim: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise CorruptFileError(
                f"tensor `{self.name}` has dtype {self.dtype!r}; a bundle holds "
                f"{', '.join(DTYPES)}."
            )
        per_neuron = self.role is not TensorRole.SHARED
        if per_neuron != (self.unit is not None):
            raise CorruptFileError(
                f"tensor `{self.name}`: role `{self.role}` "
                f"{'needs' if per_neuron else 'takes no'} `unit`."
            )
        if not self.shape or not 0 <= self.dim < len(self.shape):
            raise CorruptFileError(
                f"tensor `{self.name}`: `dim` {self.dim} is not a dimension of {self.shape}."
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def per_neuron_elements(self) -> int:
        """Elements of one neuron's slice (a row along ``dim``)."""
        return math.prod(self.shape) // self.shape[self.dim]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "role": str(self.role),
            "unit": self.unit,
            "dim": self.dim,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> TensorSpec:
        role = get_str(data, "role", prefix)
        try:
            typed_role = TensorRole(role)
        except ValueError:
            choices = ", ".join(TensorRole)
            raise CorruptFileError(
                f"field `{where(prefix, 'role')}` must be one of {choices}, got {role!r}."
            ) from None
        shape = get_list(data, "shape", prefix)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise CorruptFileError(
                f"field `{where(prefix, 'shape')}` must be a list of sizes, got {shape!r}."
            )
        return cls(
            name=get_str(data, "name", prefix),
            shape=tuple(shape),
            dtype=get_str(data, "dtype", prefix),
            role=typed_role,
            unit=get_optional_int(data, "unit", prefix),
            dim=get_int(data, "dim", prefix),
        )


@dataclass(frozen=True)
class ScalarEntry:
    """A 0-d state-dict entry, kept in the manifest as a number."""

    name: str
    dtype: str
    value: float | int | bool

    def tensor(self) -> Tensor:
        return torch.tensor(self.value, dtype=DTYPES[self.dtype])

    @classmethod
    def of(cls, name: str, tensor: Tensor) -> ScalarEntry:
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise UnsupportedModelError(f"state-dict entry `{name}` has dtype {dtype}.")
        return cls(name, dtype, tensor.item())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> ScalarEntry:
        dtype = get_str(data, "dtype", prefix)
        if dtype not in DTYPES:
            raise CorruptFileError(f"field `{where(prefix, 'dtype')}`: unknown dtype {dtype!r}.")
        value: float | int | bool
        if dtype == "bool":
            flag = data.get("value")
            if not isinstance(flag, bool):
                raise CorruptFileError(f"field `{where(prefix, 'value')}` must be true or false.")
            value = flag
        elif DTYPES[dtype].is_floating_point:
            value = get_float(data, "value", prefix)
        else:
            value = get_int(data, "value", prefix)
        return cls(get_str(data, "name", prefix), dtype, value)


@dataclass(frozen=True)
class TensorLayout:
    """Every state-dict entry of the model, in state-dict order, and the 0-d scalars."""

    tensors: tuple[TensorSpec, ...]
    scalars: tuple[ScalarEntry, ...] = ()
    depthwise_units: tuple[int, ...] = ()  # units whose layer is a depthwise convolution

    def __post_init__(self) -> None:
        names = [t.name for t in self.tensors] + [s.name for s in self.scalars]
        if len(set(names)) != len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            raise CorruptFileError(f"tensor `{repeated}` is listed twice in the layout.")

    def is_depthwise(self, unit: int | None) -> bool:
        return unit in self.depthwise_units

    def of_unit(self, unit: int) -> Iterator[TensorSpec]:
        return (t for t in self.tensors if t.unit == unit)

    def check_units(self, unit_sizes: tuple[int, ...]) -> None:
        """Every per-neuron tensor indexes an existing unit with that unit's neuron count."""
        for spec in self.tensors:
            if spec.unit is None:
                continue
            if not 0 <= spec.unit < len(unit_sizes):
                raise CorruptFileError(
                    f"tensor `{spec.name}` belongs to unit {spec.unit}, but the partition has "
                    f"{len(unit_sizes)} units."
                )
            if spec.shape[spec.dim] != unit_sizes[spec.unit]:
                raise CorruptFileError(
                    f"tensor `{spec.name}` has {spec.shape[spec.dim]} rows along dim "
                    f"{spec.dim}, but unit {spec.unit} has {unit_sizes[spec.unit]} neurons."
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensors": [t.to_dict() for t in self.tensors],
            "scalars": [s.to_dict() for s in self.scalars],
            "depthwise_units": list(self.depthwise_units),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> TensorLayout:
        tensors = get_list(data, "tensors", prefix)
        scalars = get_list(data, "scalars", prefix)
        depthwise = data.get("depthwise_units", [])
        if not isinstance(depthwise, list) or not all(
            isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in depthwise
        ):
            raise CorruptFileError(
                f"field `{where(prefix, 'depthwise_units')}` must be a list of unit indices."
            )
        return cls(
            tensors=tuple(
                TensorSpec.from_dict(t, where(where(prefix, "tensors"), i))
                for i, t in enumerate(tensors)
            ),
            scalars=tuple(
                ScalarEntry.from_dict(s, where(where(prefix, "scalars"), i))
                for i, s in enumerate(scalars)
            ),
            depthwise_units=tuple(depthwise),
        )


def plan_layout(traced: TracedModel, state: Mapping[str, Tensor]) -> TensorLayout:
    """Classify every entry of ``state`` (the traced model's state dict) by the units."""
    claimed: dict[str, tuple[TensorRole, int, int]] = {}
    by_name = {node.name: node for node in traced.graph_module.graph.nodes}
    for unit in traced.units:
        for name, role, dim in _unit_entries(traced.graph_module, by_name, unit, state):
            if name in claimed:
                raise UnsupportedModelError(
                    f"`{name}` belongs to units {claimed[name][1]} and {unit.index}; a "
                    "per-neuron parameter must belong to one unit."
                )
            claimed[name] = (role, unit.index, dim)
    tensors, scalars = [], []
    for name, tensor in state.items():
        if tensor.dim() == 0:
            scalars.append(ScalarEntry.of(name, tensor))
            continue
        role, unit_index, dim = claimed.get(name, (TensorRole.SHARED, -1, 0))
        tensors.append(
            TensorSpec(
                name=name,
                shape=tuple(tensor.shape),
                dtype=str(tensor.dtype).removeprefix("torch."),
                role=role,
                unit=None if role is TensorRole.SHARED else unit_index,
                dim=dim,
            )
        )
    depthwise = tuple(u.index for u in traced.units if u.kind is UnitKind.DEPTHWISE_CONV)
    return TensorLayout(tuple(tensors), tuple(scalars), depthwise)


def _unit_entries(
    gm: fx.GraphModule, by_name: dict[str, fx.Node], unit: Unit, state: Mapping[str, Tensor]
) -> Iterator[tuple[str, TensorRole, int]]:
    """The state-dict entries of ``unit``'s layer and local ops: (name, role, neuron dim)."""
    for suffix in ("weight", "bias"):
        name = f"{unit.name}.{suffix}"
        if name in state:
            yield name, TensorRole.LAYER, 0
    for op in unit.local_ops:
        node = by_name[op]
        if node.op == "call_module":
            yield from _module_entries(str(node.target), unit, state)
        elif node.op == "call_function":
            yield from _scale_entries(node, unit, state)


def _module_entries(
    target: str, unit: Unit, state: Mapping[str, Tensor]
) -> Iterator[tuple[str, TensorRole, int]]:
    """A local module's per-channel parameters and buffers (BatchNorm's four)."""
    prefix = f"{target}."
    for name, tensor in state.items():
        if not name.startswith(prefix) or "." in name[len(prefix) :] or tensor.dim() == 0:
            continue
        if tensor.shape[0] != unit.num_neurons:
            raise UnsupportedModelError(
                f"`{name}` of shape {tuple(tensor.shape)} in the tail of unit `{unit.name}` is "
                f"not per channel ({unit.num_neurons} neurons)."
            )
        yield name, TensorRole.LOCAL, 0


def _scale_entries(
    node: fx.Node, unit: Unit, state: Mapping[str, Tensor]
) -> Iterator[tuple[str, TensorRole, int]]:
    """A per-channel scale multiplied in the tail (ConvNeXt's layer scale)."""
    for arg in node.all_input_nodes:
        name = str(arg.target)
        if arg.op != "get_attr" or name not in state:
            continue
        varying = [d for d, s in enumerate(state[name].shape) if s != 1]
        if not varying:  # a single factor: per neuron only if the unit has one neuron
            if unit.num_neurons == 1 and state[name].dim() > 0:
                yield name, TensorRole.LOCAL, 0
            continue
        if len(varying) != 1 or state[name].shape[varying[0]] != unit.num_neurons:
            raise UnsupportedModelError(
                f"scale `{name}` of shape {tuple(state[name].shape)} in the tail of unit "
                f"`{unit.name}` is not per channel ({unit.num_neurons} neurons)."
            )
        yield name, TensorRole.LOCAL, varying[0]
