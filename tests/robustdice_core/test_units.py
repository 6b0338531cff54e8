"""Unit discovery (DESIGN 3.1): counts, sync points, kinds, costs, unsupported models."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops import stochastic_depth

from robustdice_core import InvalidParameterError, UnsupportedModelError
from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import TracedModel, Unit, UnitKind, trace_model
from robustdice_core.zoo import LoadedModel

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PaperModel = Callable[[str], tuple[nn.Module, TracedModel]]


def _node(traced: TracedModel, name: str) -> fx.Node:
    return next(n for n in traced.graph_module.graph.nodes if n.name == name)


def _module_of(traced: TracedModel, name: str) -> nn.Module | None:
    node = _node(traced, name)
    if node.op != "call_module":
        return None
    return traced.graph_module.get_submodule(str(node.target))


# --------------------------------------------------------------------------- known answers
@pytest.mark.parametrize(
    ("name", "units", "neurons", "gmacs"),
    [
        ("alexnet", 8, 10_344, 0.71),
        ("vgg16_bn", 16, 13_416, 15.47),
        ("convnext_tiny", 59, 42_184, 4.46),
    ],
)
def test_paper_models_unit_counts(
    paper_model: PaperModel, name: str, units: int, neurons: int, gmacs: float
) -> None:
    _, traced = paper_model(name)
    assert len(traced.units) == units
    assert sum(u.num_neurons for u in traced.units) == neurons
    assert [u.index for u in traced.units] == list(range(units))
    # torchvision's published GFLOPS (which are MACs) for these models
    macs = sum(u.macs_per_neuron * u.num_neurons for u in traced.units)
    assert macs / 1e9 == pytest.approx(gmacs, abs=0.01)


@pytest.mark.parametrize("name", ["alexnet", "vgg16_bn", "convnext_tiny"])
def test_params_per_neuron_account_for_every_parameter(paper_model: PaperModel, name: str) -> None:
    """Unit parameters = all parameters - LayerNorm (redundant) + BN running statistics."""
    model, traced = paper_model(name)
    total = sum(p.numel() for p in model.parameters())
    running = sum(b.numel() for n, b in model.named_buffers() if "running_" in n)
    layer_norm = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()
    )
    in_units = sum(u.params_per_neuron * u.num_neurons for u in traced.units)
    assert in_units == total + running - layer_norm


def test_alexnet_first_unit_details(paper_model: PaperModel) -> None:
    _, traced = paper_model("alexnet")
    first = traced.units[0]
    assert (first.name, first.kind, first.num_neurons) == ("features.0", "conv", 64)
    assert first.macs_per_neuron == 3 * 11 * 11 * 55 * 55
    assert first.params_per_neuron == 3 * 11 * 11 + 1
    # ReLU and max-pool are channel-local: the sync point is after the pool
    assert isinstance(_module_of(traced, first.sync_node), nn.MaxPool2d)
    assert first.sync_shape == (64, 27, 27)
    assert first.sync_elements_per_neuron == 27 * 27
    assert traced.units[-1].kind == "linear" and traced.units[-1].num_neurons == 1000


def test_vgg16_bn_batchnorm_is_inside_every_conv_unit(paper_model: PaperModel) -> None:
    _, traced = paper_model("vgg16_bn")
    convs = [u for u in traced.units if u.kind == "conv"]
    assert len(convs) == 13
    for unit in convs:
        tail = [_module_of(traced, op) for op in unit.local_ops]
        assert isinstance(tail[0], nn.BatchNorm2d), unit
        assert isinstance(tail[1], nn.ReLU), unit
        assert unit.sync_node == unit.local_ops[-1]
        sync = _module_of(traced, unit.sync_node)
        assert isinstance(sync, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d))
        # conv weights + bias + BN weight, bias, running mean, running var
        layer = traced.graph_module.get_submodule(unit.name)
        assert isinstance(layer, nn.Conv2d)
        assert unit.params_per_neuron == layer.weight[0].numel() + 1 + 4


def test_convnext_layer_scale_is_folded_into_the_second_linear(paper_model: PaperModel) -> None:
    _, traced = paper_model("convnext_tiny")
    second = [u for u in traced.units if u.name.endswith("block.5")]
    assert len(second) == 18
    for unit in second:
        muls = [
            op for op in unit.local_ops if _node(traced, op).target in (operator.mul, torch.mul)
        ]
        assert len(muls) == 1, unit.local_ops
        assert unit.kind == "linear"
        # permuted back to NCHW, so the neuron axis of the sync output is 1
        assert unit.channel_dim == 1
        assert _node(traced, unit.sync_node).target is stochastic_depth
        layer = traced.graph_module.get_submodule(unit.name)
        assert isinstance(layer, nn.Linear)
        assert unit.params_per_neuron == layer.in_features + 1 + 1  # weights, bias, scale


def test_convnext_depthwise_kind_and_layer_norm_outside_units(paper_model: PaperModel) -> None:
    _, traced = paper_model("convnext_tiny")
    depthwise = [u for u in traced.units if u.kind == "depthwise_conv"]
    assert len(depthwise) == 18
    assert all(u.name.endswith("block.0") for u in depthwise)
    assert all(u.params_per_neuron == 7 * 7 + 1 for u in depthwise)
    plain = [u.name for u in traced.units if u.kind == "conv"]
    assert plain == ["features.0.0", "features.2.1", "features.4.1", "features.6.1"]
    in_units = {op for u in traced.units for op in u.local_ops}
    layer_norms = [
        n
        for n in traced.graph_module.graph.nodes
        if n.target is F.layer_norm
        or (
            n.op == "call_module"
            and isinstance(traced.graph_module.get_submodule(str(n.target)), nn.LayerNorm)
        )
    ]
    assert len(layer_norms) == 1 + 3 + 18 + 1  # stem, downsamples, blocks, head
    assert not in_units & {n.name for n in layer_norms}


@pytest.mark.parametrize(
    ("name", "kinds", "neurons"),
    [
        ("digits-alexnet", "cccclll", 650),
        ("digits-vgg-bn", "ccccclll", 522),
        ("digits-convnext", "cdlldllcdlldlll", 1258),
    ],
)
def test_digits_models_trace(
    digits_model: Callable[[str], LoadedModel], name: str, kinds: str, neurons: int
) -> None:
    model = digits_model(name)
    traced = trace_model(model.module, model.spec.input_shape)
    letter = {"conv": "c", "depthwise_conv": "d", "linear": "l"}
    assert "".join(letter[u.kind] for u in traced.units) == kinds
    assert sum(u.num_neurons for u in traced.units) == neurons
    assert traced.example_shape == model.spec.input_shape
    # the output layer has no tail: its sync point is the layer itself
    assert traced.units[-1].sync_node == traced.units[-1].linear_node
    assert traced.units[-1].local_ops == ()


def test_unit_to_dict_round_trips(paper_model: PaperModel) -> None:
    _, traced = paper_model("alexnet")
    for unit in traced.units:
        data = unit.to_dict()
        restored = Unit(**{**data, "sync_shape": tuple(data["sync_shape"])})  # type: ignore[arg-type]
        assert restored == unit


def test_unit_kind_is_a_str_enum_that_serialises_as_before(paper_model: PaperModel) -> None:
    _, traced = paper_model("alexnet")
    first, last = traced.units[0], traced.units[-1]
    assert first.kind is UnitKind.CONV and last.kind is UnitKind.LINEAR
    assert str(first.kind) == f"{first.kind}" == "conv" == first.kind  # a plain-value tie key
    assert {str(kind) for kind in UnitKind} == {"conv", "depthwise_conv", "linear"}
    data = first.to_dict()
    assert type(data["kind"]) is str and json.dumps(data["kind"]) == '"conv"'
    restored = Unit(**{**data, "sync_shape": tuple(data["sync_shape"])})  # type: ignore[arg-type]
    assert restored == first and restored.kind is UnitKind.CONV
    with pytest.raises(InvalidParameterError, match="`kind` of unit `features.0` must be one of"):
        Unit(**{**data, "kind": "attention"})  # type: ignore[arg-type]


def test_linear_in_nhwc_layout_has_channel_last() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 1), _Permute((0, 2, 3, 1)), nn.Linear(4, 6), nn.GELU())
    traced = trace_model(model, (1, 3, 3))
    conv, linear = traced.units
    assert conv.channel_dim == 3 and conv.sync_shape == (3, 3, 4)  # permute is channel-local
    assert linear.channel_dim == 3 and linear.sync_shape == (3, 3, 6)
    assert linear.macs_per_neuron == 4 * 9


class _Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


def test_residual_branch_ends_the_unit() -> None:
    """A value with two users (a skip connection) is a sync point."""

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)
            self.head = nn.Linear(8, 3)

        def forward(self, x: Tensor) -> Tensor:
            y = self.bn(self.conv(x))
            return self.head((torch.relu(y) + y).flatten(1))

    traced = trace_model(Skip(), (2, 2, 2))
    assert traced.units[0].local_ops == ("bn",)
    assert traced.units[0].sync_node == "bn"


# --------------------------------------------------------------------------- keyword arguments
def _to_nhwc(y: Tensor) -> Tensor:
    return y.permute(0, 2, 3, 1)


KeywordCall = Callable[["_KeywordCall", Tensor], Tensor]


class _KeywordCall(nn.Module):
    """conv -> one channel-local op called with keywords -> NHWC -> Linear."""

    def __init__(self, call: KeywordCall) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(torch.full((1, 4, 1, 1), 0.5))
        self.head = nn.Linear(4, 6)
        self.call = call

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.call(self, self.conv(x)))


_KEYWORD_CALLS: dict[str, KeywordCall] = {
    "torch.sigmoid(input=)": lambda m, y: _to_nhwc(torch.sigmoid(input=y)),
    "torch.relu(input=)": lambda m, y: _to_nhwc(torch.relu(input=y)),
    "torch.permute(x, dims=)": lambda m, y: torch.sigmoid(torch.permute(y, dims=(0, 2, 3, 1))),
    "torch.permute(input=, dims=)": lambda m, y: torch.relu(
        torch.permute(input=y, dims=(0, 2, 3, 1))
    ),
    "x.permute(dims=)": lambda m, y: torch.relu(y.permute(dims=(0, 2, 3, 1))),
    "module(input=)": lambda m, y: _to_nhwc(m.act(input=y)),
    "torch.mul(input=, other=)": lambda m, y: _to_nhwc(torch.mul(input=y, other=m.scale)),
    "F.max_pool2d(input=)": lambda m, y: _to_nhwc(F.max_pool2d(input=y, kernel_size=1)),
}


@pytest.mark.parametrize("form", sorted(_KEYWORD_CALLS))
def test_keyword_arguments_are_read_like_positional_ones(form: str) -> None:
    """``torch.sigmoid(input=x)`` or ``torch.permute(x, dims=...)`` used to end in an
    IndexError; keywords now resolve to the same channel-local tail as positional calls."""
    traced = trace_model(_KeywordCall(_KEYWORD_CALLS[form]), (1, 3, 3))
    conv, head = traced.units
    assert len(conv.local_ops) == 2, conv.local_ops  # the op and the permute
    assert conv.channel_dim == 3 and conv.sync_shape == (3, 3, 4)
    assert head.channel_dim == 3 and head.sync_shape == (3, 3, 6)
    net = MaskedNetwork(traced)
    with torch.no_grad(), net.masked([torch.tensor([[1.0, 0.0, 1.0, 1.0]]), None]):
        out = net(torch.randn(2, 1, 3, 3))
    assert out.shape == (2, 3, 3, 6)


# --------------------------------------------------------------------------- unsupported
class _WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        return self.attn(x, x, x)[0]


class _Bilinear(nn.Module):
    """A custom layer holding parameters, traced through by torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight


class _WithCustomLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.mixer = _Bilinear()

    def forward(self, x: Tensor) -> Tensor:
        return self.mixer(self.proj(x))


class _Gate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


class _TopLevelFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        y = self.proj(x)
        return y if y.sum() > 0 else -y


class _NestedFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.gate = _Gate()

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(self.proj(x))


class _SharedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.proj(x)))


def test_multihead_attention_is_rejected_by_name() -> None:
    with pytest.raises(UnsupportedModelError, match=r"`attn`.*MultiheadAttention"):
        trace_model(_WithAttention(), (4, 8))


def test_data_dependent_control_flow_is_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match=r"_TopLevelFlow.*control flow"):
        trace_model(_TopLevelFlow(), (8,))


def test_layer_called_twice_is_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match=r"`proj` is called more than once"):
        trace_model(_SharedLayer(), (8,))


def test_model_without_layers_is_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match="no Conv2d or Linear"):
        trace_model(nn.Sequential(nn.ReLU(), nn.Flatten()), (2, 2))


def test_parametrised_custom_layer_is_rejected_by_name() -> None:
    with pytest.raises(UnsupportedModelError, match="mixer"):
        trace_model(_WithCustomLayer(), (8,))


def test_nested_control_flow_error_names_the_layer() -> None:
    with pytest.raises(UnsupportedModelError, match="gate|_Gate"):
        trace_model(_NestedFlow(), (8,))


def _tiny_vision_transformer() -> nn.Module:
    """torchvision's ViT (class token, multi-head attention), shrunk to build in a moment."""
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def test_vision_transformer_is_refused_as_attention_not_as_class_token() -> None:
    with pytest.raises(UnsupportedModelError) as info:
        trace_model(_tiny_vision_transformer(), (3, 32, 32), name="vit-tiny")
    message = str(info.value)
    assert message.startswith("`vit-tiny`: layer `encoder.layers.encoder_layer_0.self_attention`")
    assert "multi-head attention" in message and "cannot be partitioned by neuron" in message
    assert "RobustDiCE supports CNNs" in message and "docs/semantics.md" in message
    assert "class_token" not in message and "\n" not in message


@pytest.mark.slow
def test_vit_b_16_is_refused_as_attention() -> None:
    model = torchvision.models.get_model("vit_b_16", weights=None)
    with pytest.raises(UnsupportedModelError, match=r"`vit_b_16`: .*self_attention.*attention"):
        trace_model(model, (3, 224, 224), name="vit_b_16")
