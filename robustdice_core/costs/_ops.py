"""Per-node work of the non-layer operations in an fx graph: FLOPs and buffer aliasing.

Conv2d and Linear work is counted exactly (``Unit.macs_per_neuron``). Everything else (norms,
activations, pooling, residual adds, softmax) is estimated as a fixed number of FLOPs per
element of the node's output (or input, for reductions such as pooling). Views and
identities (permute, flatten, eval-mode dropout, in-place activations) allocate no new buffer.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

__all__ = ["node_elements", "node_flops", "is_alias", "input_elements"]

# FLOPs per element. Norms: mean (1) + variance (3) + normalise (2) [+ affine (2)].
_NORM = 6
_AFFINE = 2
_RELU = 1
_SMOOTH = 4  # sigmoid / tanh / SiLU: exp, add, divide, (multiply)
_GELU = 8  # erf-based GELU, counted as a short polynomial
_SOFTMAX = 5  # max, subtract, exp, sum, divide
_BATCHNORM = 2  # eval mode folds into one scale and one shift per element

_MODULE_COST: tuple[tuple[type[nn.Module], float], ...] = (
    (nn.BatchNorm1d, _BATCHNORM),
    (nn.BatchNorm2d, _BATCHNORM),
    (nn.ReLU, _RELU),
    (nn.ReLU6, _RELU),
    (nn.LeakyReLU, _RELU),
    (nn.Hardtanh, _RELU),
    (nn.ELU, _SMOOTH),
    (nn.GELU, _GELU),
    (nn.SiLU, _SMOOTH),
    (nn.Sigmoid, _SMOOTH),
    (nn.Tanh, _SMOOTH),
    (nn.Hardswish, 3),
    (nn.Hardsigmoid, 3),
    (nn.Softmax, _SOFTMAX),
    (nn.LogSoftmax, _SOFTMAX),
)
_REDUCING_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_FREE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout2d,
)
_FUNCTION_COST: dict[Callable[..., object], float] = {
    operator.add: 1,
    operator.sub: 1,
    operator.mul: 1,
    operator.truediv: 1,
    torch.add: 1,
    torch.sub: 1,
    torch.mul: 1,
    torch.div: 1,
    F.relu: _RELU,
    torch.relu: _RELU,
    F.relu6: _RELU,
    F.gelu: _GELU,
    F.silu: _SMOOTH,
    torch.sigmoid: _SMOOTH,
    torch.tanh: _SMOOTH,
    F.softmax: _SOFTMAX,
    torch.softmax: _SOFTMAX,
    F.log_softmax: _SOFTMAX,
    F.batch_norm: _BATCHNORM,
}
_REDUCING_FUNCTIONS: set[Callable[..., object]] = {
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.mean,
    torch.sum,
}
_NORM_FUNCTIONS: set[Callable[..., object]] = {F.layer_norm, F.group_norm}
_VIEW_FUNCTIONS: set[Callable[..., object]] = {
    torch.flatten,
    torch.permute,
    torch.reshape,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    F.dropout,
    stochastic_depth,
    operator.getitem,
}
_FREE_FUNCTIONS: set[Callable[..., object]] = {torch.cat, torch.stack}
_VIEW_METHODS = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "expand",
    "size",
    "dim",
}
_METHOD_COST = {
    "add": 1,
    "sub": 1,
    "mul": 1,
    "div": 1,
    "relu": _RELU,
    "sigmoid": _SMOOTH,
    "tanh": _SMOOTH,
    "softmax": _SOFTMAX,
}
_REDUCING_METHODS = {"mean", "sum", "amax", "max"}


def node_elements(node: fx.Node) -> int:
    """Elements of a node's tensor output for one image (0 if it has no tensor output)."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None:
        return 0
    return math.prod(int(s) for s in shape[1:])


def input_elements(node: fx.Node) -> int:
    """Elements of the node's first tensor argument for one image."""
    first = next((a for a in node.args if isinstance(a, fx.Node)), None)
    return 0 if first is None else node_elements(first)


def is_alias(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True if the node returns (a view of) its first input: no new buffer."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        return isinstance(module, _FREE_MODULES) or bool(getattr(module, "inplace", False))
    if node.op == "call_function":
        return node.target in _VIEW_FUNCTIONS or bool(node.kwargs.get("inplace", False))
    if node.op == "call_method":
        return str(node.target) in _VIEW_METHODS or str(node.target).endswith("_")
    return False


def node_flops(gm: fx.GraphModule, node: fx.Node) -> float:
    """Estimated FLOPs of one non-layer node for one image."""
    per_element, reduces = _cost(gm, node)
    return per_element * (input_elements(node) if reduces else node_elements(node))


def _cost(gm: fx.GraphModule, node: fx.Node) -> tuple[float, bool]:
    """(FLOPs per element, counted on the input rather than the output)."""
    if node.op == "call_module":
        return _module_cost(gm.get_submodule(str(node.target)))
    if node.op == "call_function":
        return _function_cost(node)
    if node.op == "call_method":
        name = str(node.target).rstrip("_")
        if name in _VIEW_METHODS:
            return 0.0, False
        if name in _REDUCING_METHODS:
            return 1.0, True
        return float(_METHOD_COST.get(name, 1)), False
    return 0.0, False  # placeholder, get_attr, output


def _module_cost(module: nn.Module) -> tuple[float, bool]:
    if isinstance(module, _FREE_MODULES):
        return 0.0, False
    if isinstance(module, _REDUCING_MODULES):
        return 1.0, True
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        affine = any(True for _ in module.parameters(recurse=False))
        return float(_NORM + (_AFFINE if affine else 0)), False
    for kind, cost in _MODULE_COST:
        if isinstance(module, kind):
            return float(cost), False
    return 1.0, False  # an unknown channel-mixing module: one FLOP per output element


def _function_cost(node: fx.Node) -> tuple[float, bool]:
    target = node.target
    if target in _VIEW_FUNCTIONS or target in _FREE_FUNCTIONS:
        return 0.0, False
    if target in _REDUCING_FUNCTIONS:
        return 1.0, True
    if target in _NORM_FUNCTIONS:
        weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
        return float(_NORM + (_AFFINE if weight is not None else 0)), False
    if callable(target) and target in _FUNCTION_COST:
        return float(_FUNCTION_COST[target]), False
    return 1.0, False
