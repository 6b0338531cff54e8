"""CDC on a real network (DESIGN 3.4): one lost slice is recovered, two are zero."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustdice_core.failures import FailureEvaluator, failure_sets
from robustdice_core.masking import MaskedNetwork, SliceRecovery, repeat_groups
from robustdice_core.partition import CDC, Partition
from robustdice_core.zoo import EvalData, LabelledImages

pytestmark = pytest.mark.usefixtures("single_torch_thread")

DIGITS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")


def _masks_and_recovery(
    partition: Partition, sets: list[tuple[int, ...]]
) -> tuple[list[Tensor | None], list[tuple[Tensor, Tensor] | None]]:
    masks: list[Tensor | None] = [
        torch.from_numpy(m).float() for m in partition.survival_masks(sets)
    ]
    spec = partition.recovery(sets)
    assert spec is not None
    recovery: list[tuple[Tensor, Tensor] | None] = [
        (torch.from_numpy(s), torch.from_numpy(lost)) for s, lost in spec
    ]
    return masks, recovery


def _images(net: MaskedNetwork, count: int = 10) -> Tensor:
    return torch.randn((count, *net.example_shape), generator=torch.Generator().manual_seed(0))


@contextmanager
def _recording(modules: list[nn.Module]) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """Records (input, output) of every call of the given modules."""
    records: list[tuple[Tensor, Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        records.append((inputs[0].detach().clone(), output.detach().clone()))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("name", DIGITS)
@pytest.mark.parametrize("nd", [2, 4])
def test_any_single_lost_device_is_recovered(
    digits_net: Callable[[str], MaskedNetwork], name: str, nd: int
) -> None:
    net = digits_net(name)
    partition = CDC().partition([u.num_neurons for u in net.units], nd)
    sets: list[tuple[int, ...]] = [()] + [(d,) for d in range(nd)]  # the parity device too
    x = _images(net)
    masks, recovery = _masks_and_recovery(partition, sets)
    with torch.no_grad():
        reference = net(x)
        with net.masked(masks, recovery):
            out = net(repeat_groups(x, len(sets))).view(len(sets), *reference.shape)
    for g in range(len(sets)):
        torch.testing.assert_close(out[g], reference, rtol=0, atol=1e-5)


def test_two_lost_data_slices_are_zero(digits_net: Callable[[str], MaskedNetwork]) -> None:
    net = digits_net("digits-convnext")  # NHWC and NCHW sync points
    partition = CDC().partition([u.num_neurons for u in net.units], 4)
    sets: list[tuple[int, ...]] = [(0, 1), (1, 3), (0, 2)]
    x = _images(net, 5)
    masks, recovery = _masks_and_recovery(partition, sets)
    with torch.no_grad(), _recording(list(net.masks)) as records, net.masked(masks, recovery):
        out = net(repeat_groups(x, len(sets)))
        assert torch.isfinite(out).all()
    assert len(records) == len(net.units)
    for unit, (_, synced) in zip(net.units, records, strict=True):
        grouped = synced.unflatten(0, (len(sets), -1)).movedim(unit.channel_dim + 1, -1)
        for g, failed in enumerate(sets):
            lost = [j for d in failed if d != 3 for j in partition.assignments[unit.index][d]]
            assert lost
            assert torch.all(grouped[g][..., lost] == 0), (unit.name, failed)
            kept = np.setdiff1d(np.arange(unit.num_neurons), lost)
            assert grouped[g][..., kept].abs().sum() > 0


def test_recovery_is_computed_as_parity_minus_survivors(
    digits_net: Callable[[str], MaskedNetwork],
) -> None:
    net = digits_net("digits-vgg-bn")
    partition = CDC().partition([u.num_neurons for u in net.units], 4)
    sets: list[tuple[int, ...]] = [(), (1,), (3,)]
    masks, recovery = _masks_and_recovery(partition, sets)
    x = _images(net, 4)
    with torch.no_grad(), _recording(list(net.recoveries)) as records, net.masked(masks, recovery):
        net(repeat_groups(x, len(sets)))
    for unit, (before, after) in zip(net.units, records, strict=True):
        before_g = before.unflatten(0, (len(sets), -1)).double()
        after_g = after.unflatten(0, (len(sets), -1))
        slice_1 = list(partition.assignments[unit.index][1])
        others = [j for d in (0, 2) for j in partition.assignments[unit.index][d]]
        assert set(slice_1) | set(others) == set(range(unit.num_neurons))
        # groups without a recoverable loss pass through untouched
        assert torch.equal(after_g[0], before_g[0].float())
        assert torch.equal(after_g[2], before_g[2].float())
        # group 1: slice 1 is rebuilt from the parity row sums minus the other data slices
        width = partition.parity_rows(unit.index)
        data = [list(partition.assignments[unit.index][d]) for d in range(3)]
        padded = torch.cat([before_g[1], torch.zeros_like(before_g[1][:, :1])], dim=1)

        def rows(neurons: list[int]) -> Tensor:  # a slice, padded with the zero column
            return padded[:, neurons + [unit.num_neurons] * (width - len(neurons))]

        parity = torch.stack([rows(s) for s in data]).sum(dim=0)
        survivors = rows(data[0]) + rows(data[2])
        expected = (parity - survivors)[:, : len(slice_1)]
        torch.testing.assert_close(after_g[1][:, slice_1].double(), expected, rtol=0, atol=1e-5)
        assert torch.equal(after_g[1][:, others], before_g[1][:, others].float())


def test_slice_recovery_rebuilds_a_zeroed_slice_by_hand() -> None:
    """The module alone, channel-last layout: slice values derive from parity - survivors."""
    module = SliceRecovery(channel_dim=1)
    x = torch.arange(1.0, 13.0).view(2, 6)  # 2 groups x 1 image x 6 neurons
    module.slices = torch.tensor([[0, 1, 2], [3, 4, 6]])  # 6 = padding (C)
    module.lost = torch.tensor([1, -1])
    out = module(x)
    assert out.shape == x.shape
    assert torch.equal(out[1], x[1])
    torch.testing.assert_close(out[0], x[0])
    module.lost = torch.tensor([-1, -1])
    assert module(x) is x


def test_failure_evaluator_on_cdc(
    digits_net: Callable[[str], MaskedNetwork], digits_data: EvalData
) -> None:
    net = digits_net("digits-vgg-bn")
    test = LabelledImages(digits_data.test.images[:200], digits_data.test.labels[:200])
    partition = CDC().partition([u.num_neurons for u in net.units], 4)
    result = FailureEvaluator(net, test).evaluate(partition, failure_sets(4, range(5)))
    assert result.by_size(1).worst == result.by_size(0).mean > 0.95
    assert result.by_size(2).worst < result.by_size(0).mean
    assert result.by_size(4).best == 0.0
