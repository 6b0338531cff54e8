"""Discovery of partitionable units and their sync points from a model's fx graph.

A unit is a ``Conv2d`` or ``Linear`` layer plus the channel-local operations that follow it
(BatchNorm, activations, pooling, dropout, per-channel scales, permutes). The unit ends at its
*sync point*: the last channel-local node, whose output is all-gathered between devices and
where a missing neuron is zero (DESIGN 3.1).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum, StrEnum

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.ops import stochastic_depth

from robustdice_core._errors import InvalidParameterError, UnsupportedModelError

__all__ = ["Unit", "UnitKind", "TracedModel", "trace_model"]

# Named in the message that refuses an attention model.
_SUPPORTED_FAMILIES = (
    "RobustDiCE supports CNNs: plain conv+FC (AlexNet, VGG), conv+BN (VGG-BN), residual "
    "(ResNet, RegNet), depthwise/inverted residual (MobileNet, EfficientNet), depthwise conv + "
    "LayerNorm + MLP (ConvNeXt); see docs/semantics.md"
)

# Elementwise ops: channel-local whatever the channel dim is.
_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.ELU,
    nn.Dropout,
    nn.Identity,
)
# Ops that act per channel but need the channel at dim 1 (NCHW / NC layouts).
_CHANNEL_FIRST_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout2d,
)
_ELEMENTWISE_FUNCTIONS: set[Callable[..., object]] = {
    F.relu,
    torch.relu,
    F.relu6,
    F.gelu,
    F.silu,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    stochastic_depth,
}
_CHANNEL_FIRST_FUNCTIONS: set[Callable[..., object]] = {
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
}
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
# Parametrised modules that may run redundantly on the gathered tensor.
_ALLOWED_PARAM_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.GroupNorm,
)


class UnitKind(StrEnum):
    """The layer a unit starts at; ``str(kind)`` is the plain value (serialised form)."""

    CONV = "conv"
    DEPTHWISE_CONV = "depthwise_conv"
    LINEAR = "linear"


@dataclass(frozen=True)
class Unit:
    """One partitionable layer and its channel-local tail, as plain data."""

    index: int
    name: str  # qualified module name of the Conv2d / Linear
    kind: UnitKind  # a plain str ("conv", ...) is accepted and converted
    num_neurons: int
    linear_node: str  # fx node computing the layer's (pre-activation) output
    sync_node: str  # fx node whose output is all-gathered
    channel_dim: int  # neuron axis of the sync output (batch is dim 0)
    sync_shape: tuple[int, ...]  # sync output shape for one image (batch dim dropped)
    local_ops: tuple[str, ...]  # fx nodes folded into the unit after the layer
    params_per_neuron: int  # weights + bias + per-channel params of the local ops
    macs_per_neuron: int  # multiply-accumulates of one neuron for one image

    def __post_init__(self) -> None:
        if not isinstance(self.kind, UnitKind):
            try:
                kind = UnitKind(self.kind)
            except ValueError:
                choices = ", ".join(UnitKind)
                raise InvalidParameterError(
                    f"`kind` of unit `{self.name}` must be one of {choices}, got {self.kind!r}."
                ) from None
            object.__setattr__(self, "kind", kind)

    @property
    def sync_elements_per_neuron(self) -> int:
        """Values one neuron contributes to the gathered tensor, per image."""
        return math.prod(self.sync_shape) // self.num_neurons

    def to_dict(self) -> dict[str, object]:
        """Plain data; ``kind`` as its plain string value."""
        return {**asdict(self), "kind": str(self.kind)}


@dataclass
class TracedModel:
    """A model's fx graph (eval mode, shapes propagated) and its units."""

    graph_module: fx.GraphModule
    units: tuple[Unit, ...]
    example_shape: tuple[int, ...]  # input shape for one image


def trace_model(
    model: nn.Module, example_shape: tuple[int, ...], *, name: str | None = None
) -> TracedModel:
    """Trace ``model`` in eval mode and discover its units.

    Args:
        model: the network; it is put in eval mode.
        example_shape: the input shape of one image, e.g. ``(3, 224, 224)``.
        name: the model's name in error messages (e.g. ``vit_b_16``); its class name if None.

    Raises:
        UnsupportedModelError: a layer cannot be split by neuron; attention layers (vision
            transformers) are named as such.
    """
    model = model.eval()
    try:
        return _trace(model, tuple(example_shape))
    except UnsupportedModelError as err:
        attention = _attention_layer(model)
        if attention is None:
            raise
        path, what = attention
        raise UnsupportedModelError(
            f"`{name or type(model).__name__}`: layer `{path}` ({what}) cannot be partitioned "
            f"by neuron; {_SUPPORTED_FAMILIES}."
        ) from err


def _trace(model: nn.Module, example_shape: tuple[int, ...]) -> TracedModel:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for untraceable code
        culprit = _untraceable_layer(model) or type(model).__name__
        raise UnsupportedModelError(
            f"cannot trace layer `{culprit}` with torch.fx ({err}); units can only be "
            "discovered for models without data-dependent control flow."
        ) from err
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros((1, *example_shape)))
    _check_supported(gm)
    units = tuple(_discover(gm))
    if not units:
        raise UnsupportedModelError(
            f"`{type(model).__name__}` has no Conv2d or Linear layer to partition."
        )
    return TracedModel(graph_module=gm, units=units, example_shape=example_shape)


def _attention_layer(model: nn.Module) -> tuple[str, str] | None:
    """The first attention sub-module (transformers), as its path and a description."""
    for path, module in model.named_modules():
        cls = type(module).__name__
        if not path:
            continue  # the model itself
        if isinstance(module, nn.MultiheadAttention):
            return path, f"multi-head attention, {cls}"
        if "attention" in cls.lower():
            return path, f"attention, {cls}"
    return None


def _untraceable_layer(model: nn.Module, prefix: str = "") -> str | None:
    """The deepest named sub-module that torch.fx cannot trace on its own, if any."""
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        try:
            fx.symbolic_trace(child)
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return _untraceable_layer(child, f"{path}.") or f"{path} ({type(child).__name__})"
    return None


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedModelError(f"node `{node.name}` has no single tensor output.")
    return tuple(int(s) for s in meta.shape)


# Functions that may consume a parameter directly (a norm layer traced through, such as
# torchvision's LayerNorm2d); any other use of a bare parameter is a layer we cannot split.
_PARAM_FUNCTIONS: set[Callable[..., object]] = {
    F.layer_norm,
    F.batch_norm,
    F.group_norm,
    operator.mul,
    torch.mul,
}


def _check_supported(gm: fx.GraphModule) -> None:
    _check_bare_parameters(gm)
    seen: set[str] = set()
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and node.target in seen:
            raise UnsupportedModelError(
                f"layer `{node.target}` is called more than once; a partitioned layer must "
                "have a single call site."
            )
        seen.add(node.target)
        if isinstance(module, (nn.Conv2d, nn.Linear, *_ALLOWED_PARAM_MODULES)):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            raise UnsupportedModelError(
                f"layer `{node.target}` ({type(module).__name__}) holds parameters but is "
                "neither Conv2d, Linear nor a normalisation layer; it cannot be partitioned."
            )


def _check_bare_parameters(gm: fx.GraphModule) -> None:
    """Parameters used outside a module call: only norms and per-channel scales are allowed."""
    for node in gm.graph.nodes:
        if node.op != "get_attr" or not _is_param(gm, node):
            continue
        for user in node.users:
            allowed = user.op == "call_function" and user.target in _PARAM_FUNCTIONS
            if user.target in (operator.mul, torch.mul):
                allowed = _is_channel_scale(gm, node)
            if not allowed:
                owner = str(node.target).rsplit(".", 1)[0]
                raise UnsupportedModelError(
                    f"layer `{owner}` uses its parameter `{node.target}` in `{user.name}`, "
                    "which is neither Conv2d, Linear, a norm nor a per-channel scale; it "
                    "cannot be partitioned."
                )


def _is_channel_scale(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A parameter with at most one non-singleton dimension (a per-channel scale)."""
    return sum(1 for s in gm.get_parameter(str(node.target)).shape if s != 1) <= 1


def _discover(gm: fx.GraphModule) -> list[Unit]:
    units: list[Unit] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        out_shape = _shape(node)
        channel_dim = 1 if isinstance(module, nn.Conv2d) else len(out_shape) - 1
        tail, sync_dim = _channel_local_tail(gm, node, channel_dim)
        sync = tail[-1] if tail else node
        units.append(
            Unit(
                index=len(units),
                name=str(node.target),
                kind=_kind(module),
                num_neurons=out_shape[channel_dim],
                linear_node=node.name,
                sync_node=sync.name,
                channel_dim=sync_dim,
                sync_shape=_shape(sync)[1:],
                local_ops=tuple(n.name for n in tail),
                params_per_neuron=_params_per_neuron(gm, module, tail),
                macs_per_neuron=_macs_per_neuron(module, out_shape, channel_dim),
            )
        )
    return units


def _kind(module: nn.Conv2d | nn.Linear) -> UnitKind:
    if isinstance(module, nn.Linear):
        return UnitKind.LINEAR
    is_depthwise = module.groups > 1 and module.groups == module.in_channels
    return UnitKind.DEPTHWISE_CONV if is_depthwise else UnitKind.CONV


def _macs_per_neuron(module: nn.Module, out_shape: tuple[int, ...], channel_dim: int) -> int:
    positions = math.prod(s for i, s in enumerate(out_shape) if i not in (0, channel_dim))
    if isinstance(module, nn.Linear):
        return module.in_features * positions
    assert isinstance(module, nn.Conv2d)
    per_position = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return per_position * positions


def _params_per_neuron(
    gm: fx.GraphModule, module: nn.Conv2d | nn.Linear, tail: list[fx.Node]
) -> int:
    count = module.weight[0].numel() + (1 if getattr(module, "bias", None) is not None else 0)
    for node in tail:
        if node.op == "call_module":
            sub = gm.get_submodule(str(node.target))
            # BatchNorm: affine weight/bias and running mean/var, one each per channel.
            count += sum(1 for _ in sub.parameters()) + sum(
                1 for b in sub.buffers() if b.dim() == 1
            )
        elif node.op == "call_function" and node.target in (operator.mul, torch.mul):
            count += 1  # a per-channel scale
    return count


def _channel_local_tail(
    gm: fx.GraphModule, start: fx.Node, channel_dim: int
) -> tuple[list[fx.Node], int]:
    """Follow single-user channel-local nodes from ``start``; return them and the final dim."""
    tail: list[fx.Node] = []
    current = start
    while len(current.users) == 1:
        user = next(iter(current.users))
        next_dim = _channel_dim_after(gm, user, current, channel_dim)
        if next_dim is None:
            break
        tail.append(user)
        current, channel_dim = user, next_dim
    return tail, channel_dim


def _channel_dim_after(
    gm: fx.GraphModule, node: fx.Node, source: fx.Node, channel_dim: int
) -> int | None:
    """The neuron axis after ``node`` if it is channel-local on ``source``, else None.

    Arguments may be positional or keywords (``torch.sigmoid(input=x)``).
    """
    role = _local_role(gm, node)
    if role is None:
        return None
    ndim = len(_shape(source))
    if role is _Role.SCALE:
        operands = (_argument(gm, node, 0, "input"), _argument(gm, node, 1, "other"))
        return _scale_dim(gm, operands, source, channel_dim, ndim)
    if _argument(gm, node, 0, "input") is not source:
        return None
    if role is _Role.ELEMENTWISE:
        return channel_dim
    if role is _Role.CHANNEL_FIRST:
        return channel_dim if channel_dim == 1 else None
    if node.op == "call_method" and len(node.args) > 2:  # x.permute(0, 2, 3, 1)
        return _permuted_dim(node.args[1:], channel_dim, ndim)
    return _permuted_dim(_argument(gm, node, 1, "dims"), channel_dim, ndim)


class _Role(Enum):
    """How an op may act on a unit's output without mixing its channels."""

    ELEMENTWISE = "elementwise"  # any layout
    CHANNEL_FIRST = "channel_first"  # per channel at dim 1 (BatchNorm, pooling)
    PERMUTE = "permute"  # the neuron axis moves
    SCALE = "scale"  # a multiply, channel-local if by a per-channel parameter


def _local_role(gm: fx.GraphModule, node: fx.Node) -> _Role | None:
    """The role ``node`` may play in a unit's channel-local tail, if any."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, _ELEMENTWISE_MODULES):
            return _Role.ELEMENTWISE
        if isinstance(module, _CHANNEL_FIRST_MODULES):
            return _Role.CHANNEL_FIRST
    elif node.op == "call_function":
        if node.target in _ELEMENTWISE_FUNCTIONS:
            return _Role.ELEMENTWISE
        if node.target in _CHANNEL_FIRST_FUNCTIONS:
            return _Role.CHANNEL_FIRST
        if node.target is torch.permute:
            return _Role.PERMUTE
        if node.target in (operator.mul, torch.mul):
            return _Role.SCALE
    elif node.op == "call_method":
        if node.target in _ELEMENTWISE_METHODS:
            return _Role.ELEMENTWISE
        if node.target == "permute":
            return _Role.PERMUTE
    return None


def _argument(gm: fx.GraphModule, node: fx.Node, position: int, keyword: str) -> object:
    """Argument ``position`` of a call, given positionally or as ``keyword``."""
    if len(node.args) > position:
        return node.args[position]
    if keyword in node.kwargs:
        return node.kwargs[keyword]
    if node.op != "call_method":  # a module's own keyword name: ask its signature
        try:
            normalized = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
        except Exception:  # noqa: BLE001 - fx raises RuntimeError/TypeError when ambiguous
            normalized = None
        values = list(normalized.kwargs.values()) if normalized is not None else []
        if len(values) > position:
            return values[position]
    layer = node.target if node.op == "call_module" else node.name
    raise UnsupportedModelError(
        f"layer `{layer}`: cannot tell which argument is `{keyword}` (position {position}) of "
        f"this call, args={node.args!r}, kwargs={dict(node.kwargs)!r}; pass it positionally."
    )


def _permuted_dim(dims: object, channel_dim: int, ndim: int) -> int | None:
    if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
        return None
    order = [int(d) % ndim for d in dims]
    return order.index(channel_dim) if channel_dim in order else None


def _scale_dim(
    gm: fx.GraphModule,
    operands: tuple[object, object],
    source: fx.Node,
    channel_dim: int,
    ndim: int,
) -> int | None:
    """A multiply by a parameter that varies only along the channel axis (layer scale)."""
    others = [a for a in operands if a is not source]
    if len(others) != 1:
        return None
    other = others[0]
    if not isinstance(other, fx.Node) or other.op != "get_attr":
        return None
    value = gm.get_parameter(str(other.target)) if _is_param(gm, other) else None
    if value is None:
        return None
    shape = (1,) * (ndim - value.dim()) + tuple(value.shape)
    if len(shape) != ndim:
        return None
    varying = [i for i, s in enumerate(shape) if s != 1]
    return channel_dim if varying in ([], [channel_dim]) else None


def _is_param(gm: fx.GraphModule, node: fx.Node) -> bool:
    try:
        gm.get_parameter(str(node.target))
    except AttributeError:
        return False
    return True
