"""Masked forward (DESIGN 3.1, 3.5): exactness, zero after BatchNorm, groups, graph splitting."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from robustdice_core.masking import MaskedNetwork, repeat_groups, split_graph
from robustdice_core.units import TracedModel, Unit
from robustdice_core.zoo import LoadedModel

pytestmark = pytest.mark.usefixtures("single_torch_thread")

DIGITS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")


def _images(count: int, shape: tuple[int, ...], seed: int = 0) -> Tensor:
    return torch.randn((count, *shape), generator=torch.Generator().manual_seed(seed))


def _ones(units: tuple[Unit, ...], groups: int = 1) -> list[Tensor | None]:
    return [torch.ones(groups, u.num_neurons) for u in units]


def _random_masks(units: tuple[Unit, ...], groups: int, seed: int) -> list[Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(groups, u.num_neurons, generator=generator) > 0.3).float() for u in units]


def _zero_channel(dim: int, channel: int) -> Callable[[nn.Module, object, Tensor], Tensor]:
    def hook(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        output = output.clone()
        output.select(dim, channel).zero_()
        return output

    return hook


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", DIGITS)
def test_all_true_masks_reproduce_the_digits_models_exactly(
    digits_model: Callable[[str], LoadedModel],
    digits_net: Callable[[str], MaskedNetwork],
    name: str,
) -> None:
    model, net = digits_model(name), digits_net(name)
    x = _images(16, model.spec.input_shape)
    with torch.no_grad():
        plain = model.module(x)
        unmasked = net(x)
        with net.masked(_ones(net.units)):
            masked = net(x)
    assert torch.equal(unmasked, plain)
    assert torch.equal(masked, plain)


def test_all_true_masks_reproduce_convnext_tiny_exactly(
    paper_model: Callable[[str], tuple[nn.Module, TracedModel]],
) -> None:
    model, traced = paper_model("convnext_tiny")
    net = MaskedNetwork(traced)
    x = _images(2, (3, 224, 224))
    with torch.no_grad():
        plain = model(x)
        with net.masked(_ones(net.units)):
            masked = net(x)
    assert torch.equal(masked, plain)


def test_masks_are_cleared_after_the_block(vgg_digits_net: MaskedNetwork) -> None:
    net = vgg_digits_net
    x = _images(4, net.example_shape)
    with torch.no_grad():
        before = net(x)
        with net.masked([torch.zeros(1, u.num_neurons) for u in net.units]):
            zeroed = net(x)
        after = net(x)
    assert not torch.equal(zeroed, before)
    assert torch.equal(after, before)


def test_wrong_number_of_masks_is_rejected(vgg_digits_net: MaskedNetwork) -> None:
    with pytest.raises(ValueError, match="expected 8 masks, got 1"):
        with vgg_digits_net.masked([None]):
            pass


# --------------------------------------------------------------------------- zero after BN
def _bn_of_zero(bn: nn.BatchNorm2d) -> Tensor:
    """Per channel, what eval-mode BatchNorm makes of a zero input."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (bn.bias - bn.running_mean * scale).detach()


@pytest.mark.parametrize(("unit_index", "sync_module"), [(0, 2), (1, 6), (4, 16)])
def test_masked_neuron_is_zero_after_batchnorm(
    vgg_digits: LoadedModel, vgg_digits_net: MaskedNetwork, unit_index: int, sync_module: int
) -> None:
    """A zeroed mask entry equals zeroing the channel at the sync module's output (after BN)."""
    net, model = vgg_digits_net, vgg_digits.module
    unit = net.units[unit_index]
    features = model.get_submodule("features")
    assert isinstance(features, nn.Sequential)
    assert unit.sync_node == f"features_{sync_module}"
    bn = model.get_submodule(unit.local_ops[0].replace("_", "."))
    assert isinstance(bn, nn.BatchNorm2d)
    bn_zero = _bn_of_zero(bn)
    channel = int(bn_zero.argmax())
    assert bn_zero[channel] > 0.1  # so ReLU(BN(0)) != 0 and the two placements differ
    x = _images(8, net.example_shape)
    masks: list[Tensor | None] = [None] * len(net.units)
    mask = torch.ones(1, unit.num_neurons)
    mask[0, channel] = 0.0
    masks[unit_index] = mask
    with torch.no_grad():
        with net.masked(masks):
            masked = net(x)
        handle = features[sync_module].register_forward_hook(_zero_channel(1, channel))
        try:
            after_bn = model(x)
        finally:
            handle.remove()
        handle = model.get_submodule(unit.name).register_forward_hook(_zero_channel(1, channel))
        try:
            before_bn = model(x)
        finally:
            handle.remove()
    assert torch.equal(masked, after_bn)
    assert not torch.allclose(masked, before_bn, atol=1e-4)  # BN(0) != 0


@pytest.mark.parametrize("unit_index", [0, 1, 2, 3, 7])
def test_masked_neuron_is_zero_at_the_sync_node_in_any_layout(
    digits_net: Callable[[str], MaskedNetwork], unit_index: int
) -> None:
    """ConvNeXt: zeroing at the sync output (NHWC or NCHW) by hand through a graph split."""
    net = digits_net("digits-convnext")
    unit = net.units[unit_index]
    x = _images(6, net.example_shape)
    channel = unit.num_neurons // 3
    prefix, suffix = split_graph(net.graph_module, unit.sync_node)
    masks: list[Tensor | None] = [None] * len(net.units)
    mask = torch.ones(1, unit.num_neurons)
    mask[0, channel] = 0.0
    masks[unit_index] = mask
    with torch.no_grad():
        live = list(prefix(x))
        sync_position = [n.name for n in suffix.graph.nodes if n.op == "placeholder"].index(
            f"live_{unit.sync_node}"
        )
        zeroed = live[sync_position].clone()
        zeroed.select(unit.channel_dim, channel).zero_()
        live[sync_position] = zeroed
        by_hand = suffix(*live)
        with net.masked(masks):
            masked = net(x)
    assert torch.equal(masked, by_hand)


# --------------------------------------------------------------------------- groups
@pytest.mark.parametrize("name", DIGITS)
def test_group_outputs_depend_only_on_their_own_mask(
    digits_net: Callable[[str], MaskedNetwork], name: str
) -> None:
    net = digits_net(name)
    groups, images = 3, 5
    x = _images(images, net.example_shape)
    batched = repeat_groups(x, groups)
    masks = _random_masks(net.units, groups, seed=1)
    with torch.no_grad():
        with net.masked(masks):
            together = net(batched).view(groups, images, -1)
        for g in range(groups):
            with net.masked([m[g : g + 1] for m in masks if m is not None]):
                alone = net(x)
            torch.testing.assert_close(together[g], alone, rtol=0, atol=1e-6)
        # changing group 1's masks leaves groups 0 and 2 bit-identical
        changed = [m.clone() for m in masks if m is not None]
        for m in changed:
            m[1] = 1.0 - m[1]
        with net.masked(list(changed)):
            other = net(batched).view(groups, images, -1)
    assert torch.equal(other[0], together[0]) and torch.equal(other[2], together[2])
    assert not torch.equal(other[1], together[1])


def test_repeat_groups_is_group_major() -> None:
    x = torch.arange(6.0).view(3, 2)
    out = repeat_groups(x, 2)
    assert out.shape == (6, 2)
    assert torch.equal(out[:3], x) and torch.equal(out[3:], x)


# --------------------------------------------------------------------------- split_graph
@pytest.mark.parametrize("name", DIGITS)
def test_prefix_and_suffix_equal_the_full_forward(
    digits_net: Callable[[str], MaskedNetwork], name: str
) -> None:
    net = digits_net(name)
    x = _images(4, net.example_shape)
    masks = _random_masks(net.units, 1, seed=2)
    cuts = [n for u in net.units for n in (u.linear_node, u.sync_node)]
    with torch.no_grad(), net.masked(masks):
        full = net(x)
        for cut in cuts:
            prefix, suffix = net.split_after(cut)
            assert torch.equal(suffix(*prefix(x)), full), cut


def test_split_inside_a_convnext_block_carries_the_residual(
    digits_net: Callable[[str], MaskedNetwork],
) -> None:
    net = digits_net("digits-convnext")
    inside = net.units[2]  # the first block's expanding Linear
    prefix, suffix = net.split_after(inside.sync_node)
    x = _images(3, net.example_shape)
    with torch.no_grad():
        live = prefix(x)
        assert len(live) == 2  # the unit's output and the block input for the residual add
        assert torch.equal(suffix(*live), net(x))
    assert net.node_shape(inside.sync_node) == inside.sync_shape
