"""Accuracy under failures (DESIGN 3.5): failure sets, the batched evaluator, aggregates."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustdice_core import InvalidParameterError
from robustdice_core.failures import FailureAccuracy, FailureEvaluator, failure_sets
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CDC, LOP, FullReplication, Partition, RobustDiCE
from robustdice_core.units import trace_model
from robustdice_core.zoo import EvalData, LabelledImages

pytestmark = pytest.mark.usefixtures("single_torch_thread")

ND = 4
ALL_SETS = failure_sets(ND, range(ND + 1))


def _sizes(net: MaskedNetwork) -> list[int]:
    return [u.num_neurons for u in net.units]


def _naive_accuracy(
    net: MaskedNetwork, data: LabelledImages, partition: Partition, failed: Sequence[int]
) -> float:
    """One failure set at a time: a plain masked forward of the whole test set."""
    if len(failed) == partition.num_devices:
        return 0.0
    masks: list[Tensor | None] = [
        torch.from_numpy(m).float() for m in partition.survival_masks([failed])
    ]
    spec = partition.recovery([failed])
    recovery: list[tuple[Tensor, Tensor] | None] | None = None
    if spec is not None:
        recovery = [(torch.from_numpy(s), torch.from_numpy(lost)) for s, lost in spec]
    with torch.no_grad(), net.masked(masks, recovery):
        predicted = net(data.images).argmax(dim=1)
    return int((predicted == data.labels).sum()) / len(data)


@pytest.fixture(scope="module")
def test_set(digits_data: EvalData) -> LabelledImages:
    return LabelledImages(digits_data.test.images[:300], digits_data.test.labels[:300])


@pytest.fixture(scope="module")
def evaluator(vgg_digits_net: MaskedNetwork, test_set: LabelledImages) -> FailureEvaluator:
    return FailureEvaluator(vgg_digits_net, test_set)


# --------------------------------------------------------------------------- failure sets
def test_failure_sets_enumerates_every_combination() -> None:
    sets = failure_sets(4, range(4))
    assert len(sets) == 15
    assert sets[0] == () and sets[1:5] == [(0,), (1,), (2,), (3,)]
    assert [len(f) for f in sets] == sorted(len(f) for f in sets)
    assert len(set(sets)) == 15
    assert failure_sets(4, [4, 0, 4]) == [(), (0, 1, 2, 3)]
    assert len(failure_sets(6, [2])) == 15


@pytest.mark.parametrize("sizes", [[5], [-1], [0, 1, 7]])
def test_failure_sets_rejects_impossible_sizes(sizes: list[int]) -> None:
    with pytest.raises(InvalidParameterError, match="outside 0..4"):
        failure_sets(4, sizes)


# --------------------------------------------------------------------------- evaluator
def test_replication_keeps_the_no_failure_accuracy(
    evaluator: FailureEvaluator, vgg_digits_net: MaskedNetwork, test_set: LabelledImages
) -> None:
    result = evaluator.evaluate(FullReplication().partition(_sizes(vgg_digits_net), ND), ALL_SETS)
    with torch.no_grad():
        correct = int((vgg_digits_net(test_set.images).argmax(1) == test_set.labels).sum())
    plain = correct / len(test_set)
    assert plain > 0.95
    table = dict(zip(result.failure_sets, result.accuracy, strict=True))
    for failed in ALL_SETS[:-1]:
        assert table[failed] == plain, failed
    assert table[(0, 1, 2, 3)] == 0.0  # every device down: nothing is computed


def test_lop_loses_accuracy_and_counts_total_failure_as_zero(
    evaluator: FailureEvaluator, vgg_digits_net: MaskedNetwork
) -> None:
    result = evaluator.evaluate(LOP().partition(_sizes(vgg_digits_net), ND), ALL_SETS)
    assert result.by_size(0).mean > 0.95
    assert result.by_size(1).worst < result.by_size(0).mean - 0.1
    assert result.by_size(4).best == 0.0


@pytest.mark.parametrize("method", ["lop", "robustdice", "cdc"])
def test_evaluator_equals_a_naive_per_failure_set_loop(
    evaluator: FailureEvaluator,
    vgg_digits_net: MaskedNetwork,
    test_set: LabelledImages,
    method: str,
) -> None:
    sizes = _sizes(vgg_digits_net)
    if method == "lop":
        partition = LOP().partition(sizes, ND)
    elif method == "cdc":
        partition = CDC().partition(sizes, ND)
    else:
        rng = np.random.default_rng(0)
        points = [rng.random((n, 2)) for n in sizes]
        partition = RobustDiCE(points, 0.4).partition(sizes, ND)
    result = evaluator.evaluate(partition, ALL_SETS)
    naive = [_naive_accuracy(vgg_digits_net, test_set, partition, f) for f in ALL_SETS]
    np.testing.assert_allclose(result.accuracy, naive, rtol=0, atol=1.5 / len(test_set))
    assert result.num_devices == ND


def test_chunking_and_caching_do_not_change_the_counts(
    vgg_digits_net: MaskedNetwork, test_set: LabelledImages
) -> None:
    partition = LOP().partition(_sizes(vgg_digits_net), ND)
    default = FailureEvaluator(vgg_digits_net, test_set).correct_counts(partition, ALL_SETS)
    chunked = FailureEvaluator(
        vgg_digits_net, test_set, max_batch=128, cache_limit_mb=0
    ).correct_counts(partition, ALL_SETS)
    assert np.abs(default - chunked).max() <= 1
    assert chunked.dtype.kind == "i" and chunked.shape == (len(ALL_SETS),)


@pytest.mark.parametrize("batch_size", [1, 37, 100_000])
def test_a_fixed_batch_size_sets_the_samples_per_forward_and_keeps_the_counts(
    vgg_digits_net: MaskedNetwork, test_set: LabelledImages, batch_size: int
) -> None:
    partition = LOP().partition(_sizes(vgg_digits_net), ND)
    part = LabelledImages(test_set.images[:60], test_set.labels[:60])
    default = FailureEvaluator(vgg_digits_net, part).correct_counts(partition, ALL_SETS)
    fixed = FailureEvaluator(vgg_digits_net, part, batch_size=batch_size)
    assert fixed.samples_per_forward == batch_size
    assert fixed.device == torch.device("cpu")
    assert np.abs(fixed.correct_counts(partition, ALL_SETS) - default).max() <= 1


def test_the_batch_follows_the_memory_budget(
    vgg_digits_net: MaskedNetwork, test_set: LabelledImages
) -> None:
    small = FailureEvaluator(vgg_digits_net, test_set, memory_budget_mb=1, cache_limit_mb=0)
    large = FailureEvaluator(vgg_digits_net, test_set, memory_budget_mb=64, cache_limit_mb=0)
    assert 1 <= small.samples_per_forward < large.samples_per_forward
    with pytest.raises(InvalidParameterError, match="`--batch-size` must be at least 1"):
        FailureEvaluator(vgg_digits_net, test_set, batch_size=0)


def test_evaluator_validates_its_inputs(
    evaluator: FailureEvaluator, vgg_digits_net: MaskedNetwork
) -> None:
    with pytest.raises(InvalidParameterError, match="does not match this model's units"):
        evaluator.evaluate(LOP().partition([3, 4], 2), [()])
    empty = LabelledImages(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(InvalidParameterError, match="test set is empty"):
        FailureEvaluator(vgg_digits_net, empty)


def test_repeated_evaluations_give_the_same_result() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.LeakyReLU(0.5, inplace=True),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).eval()
    images = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    net = MaskedNetwork(trace_model(model, (1, 4, 4)))
    evaluator = FailureEvaluator(net, LabelledImages(images, labels))
    partition = FullReplication().partition(_sizes(net), 2)
    first = evaluator.evaluate(partition, [()]).accuracy
    assert first == (1.0,)
    assert evaluator.evaluate(partition, [()]).accuracy == first


# --------------------------------------------------------------------------- aggregates
def _hand_result() -> FailureAccuracy:
    return FailureAccuracy(
        num_devices=2,
        failure_sets=((), (0,), (1,), (0, 1)),
        accuracy=(0.9, 0.5, 0.7, 0.0),
    )


def test_by_size() -> None:
    result = _hand_result()
    assert result.sizes() == [0, 1, 2]
    stats = result.by_size(1)
    assert (stats.failed, stats.worst, stats.best, stats.count) == (1, 0.5, 0.7, 2)
    assert stats.mean == pytest.approx(0.6)
    with pytest.raises(InvalidParameterError, match="no failure set of size 3"):
        result.by_size(3)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_expected_accuracy_by_hand(p: float) -> None:
    expected = (1 - p) ** 2 * 0.9 + p * (1 - p) * 0.5 + p * (1 - p) * 0.7
    assert _hand_result().expected(p) == pytest.approx(expected)


def test_expected_accuracy_checks_its_inputs() -> None:
    with pytest.raises(InvalidParameterError, match="`fail_prob` must be in"):
        _hand_result().expected(1.5)
    partial = FailureAccuracy(2, ((), (0,)), (0.9, 0.5))
    with pytest.raises(InvalidParameterError, match=r"\(1,\) was not evaluated"):
        partial.expected(0.1)


def test_real_result_aggregates(
    evaluator: FailureEvaluator, vgg_digits_net: MaskedNetwork
) -> None:
    rng = np.random.default_rng(1)
    sizes = _sizes(vgg_digits_net)
    partition = RobustDiCE([rng.random((n, 3)) for n in sizes], 0.3).partition(sizes, ND)
    result = evaluator.evaluate(partition, ALL_SETS)
    assert result.expected(0.0) == result.by_size(0).mean == result.accuracy[0]
    assert result.expected(1.0) == 0.0
    by_hand = sum(
        0.2 ** len(f) * 0.8 ** (ND - len(f)) * a
        for f, a in zip(result.failure_sets, result.accuracy, strict=True)
    )
    assert result.expected(0.2) == pytest.approx(by_hand)
    for k in result.sizes():
        stats = result.by_size(k)
        assert stats.worst <= stats.mean <= stats.best
        assert stats.count == len(list(itertools.combinations(range(ND), k)))
    data = result.to_dict()
    assert isinstance(data["failure_sets"], list) and isinstance(data["accuracy"], list)
    assert data["failure_sets"][:2] == [[], [0]] and len(data["accuracy"]) == 16


def test_failure_sets_are_normalised_to_sorted_tuples(
    evaluator: FailureEvaluator, vgg_digits_net: MaskedNetwork
) -> None:
    partition = LOP().partition(_sizes(vgg_digits_net), ND)
    result = evaluator.evaluate(partition, [(2, 0), (0, 2)])
    assert result.failure_sets == ((0, 2), (0, 2))
    assert result.accuracy[0] == result.accuracy[1]


def test_the_no_failure_configuration_is_evaluated_once_per_evaluator(
    vgg_digits_net: MaskedNetwork, digits_data: EvalData, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = FailureEvaluator(
        vgg_digits_net, LabelledImages(digits_data.test.images[:64], digits_data.test.labels[:64])
    )
    sets = failure_sets(4, range(4))
    sizes = [u.num_neurons for u in vgg_digits_net.units]
    first = evaluator.evaluate(LOP().partition(sizes, 4), sets)
    computed: list[int] = []
    original = evaluator._count_configs

    def spy(masks: list[np.ndarray], recovery: object, rows: np.ndarray) -> np.ndarray:
        computed.append(rows.size)
        return original(masks, recovery, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluator, "_count_configs", spy)
    again = evaluator.evaluate(FullReplication().partition(sizes, 4), sets)
    assert computed == [0] or computed == []  # every set keeps every neuron: all memoised
    assert again.by_size(0).mean == first.by_size(0).mean
