"""Importance scores (DESIGN 3.2): known answers, brute force, normalisation and the cache."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdice_core import InvalidParameterError, UnknownNameError
from robustdice_core.importance import (
    SCORERS,
    DivergenceScorer,
    ImportanceScorer,
    ImportanceScores,
    MagnitudeScorer,
    TaylorScorer,
    compute_scores,
    jensen_shannon,
    parse_score_names,
)
from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import trace_model
from robustdice_core.zoo import EvalData, LabelledImages

pytestmark = pytest.mark.usefixtures("single_torch_thread")

INPUT = (1, 16, 16)


def _tiny_model() -> nn.Sequential:
    """conv+BN+ReLU+pool, conv+ReLU, linear+ReLU, linear: four units, BN(0) != 0."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    )
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
        bn.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _calibration(count: int = 64, seed: int = 0) -> LabelledImages:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn((count, *INPUT), generator=generator)
    labels = torch.randint(0, 5, (count,), generator=generator)
    return LabelledImages(images, labels)


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Sequential, MaskedNetwork]:
    model = _tiny_model()
    return model, MaskedNetwork(trace_model(model, INPUT))


def _layers(model: nn.Sequential) -> list[nn.Conv2d | nn.Linear]:
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


# --------------------------------------------------------------------------- s1
def test_s1_by_hand(tiny: tuple[nn.Sequential, MaskedNetwork]) -> None:
    model, net = tiny
    scores = MagnitudeScorer().score(net, _calibration(4))
    assert len(scores) == 4
    for layer, got in zip(_layers(model), scores, strict=True):
        weights = layer.weight.detach().reshape(layer.weight.shape[0], -1).tolist()
        bias = layer.bias.detach().tolist()  # type: ignore[union-attr]
        expected = [sum(abs(w) for w in row) + abs(b) for row, b in zip(weights, bias)]
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_s1_without_bias() -> None:
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, -3.0]]))
    net = MaskedNetwork(trace_model(nn.Sequential(layer), (3,)))
    (scores,) = MagnitudeScorer().score(net, LabelledImages(torch.zeros(1, 3), torch.zeros(1)))
    assert scores.tolist() == [3.5, 3.0]


# --------------------------------------------------------------------------- s2
@pytest.mark.parametrize("use_labels", [True, False])
def test_s2_equals_manual_autograd(
    tiny: tuple[nn.Sequential, MaskedNetwork], use_labels: bool
) -> None:
    model, net = tiny
    calibration = _calibration(40)
    layers = _layers(model)
    params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
    logits = model(calibration.images)
    target = calibration.labels if use_labels else logits.detach().argmax(dim=1)
    grads = torch.autograd.grad(F.cross_entropy(logits, target), params)
    scorer = TaylorScorer(batch_size=7, use_labels=use_labels)  # 6 batches, the last short
    scores = scorer.score(net, calibration)
    for i, (layer, got) in enumerate(zip(layers, scores, strict=True)):
        gw, gb = grads[2 * i], grads[2 * i + 1]
        assert layer.bias is not None
        expected = (gw * layer.weight).abs().flatten(1).sum(1) + (gb * layer.bias).abs()
        np.testing.assert_allclose(got, expected.detach().double().numpy(), rtol=1e-4, atol=1e-9)
    assert scorer.settings() == {"use_labels": use_labels}


# --------------------------------------------------------------------------- s3
def _jsd_reference(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
    return 0.5 * (kl_p + kl_q)


def _zero_channel_hook(channel: int) -> Callable[[nn.Module, object, Tensor], Tensor]:
    def hook(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        output = output.clone()
        output[:, channel] = 0.0
        return output

    return hook


def _naive_s3(model: nn.Sequential, net: MaskedNetwork, images: Tensor) -> list[np.ndarray]:
    """One neuron at a time: a full forward of the original model with that neuron zeroed at
    its sync module's output (a forward hook), JSD against the full output, mean over images."""
    with torch.no_grad():
        reference = torch.softmax(model(images), dim=-1).double().numpy()
        result = []
        for unit in net.units:
            node = next(n for n in net.graph_module.graph.nodes if n.name == unit.sync_node)
            sync_module = model.get_submodule(str(node.target))
            scores = np.empty(unit.num_neurons)
            for j in range(unit.num_neurons):
                handle = sync_module.register_forward_hook(_zero_channel_hook(j))
                try:
                    probs = torch.softmax(model(images), dim=-1).double().numpy()
                finally:
                    handle.remove()
                scores[j] = _jsd_reference(reference, probs).mean()
            result.append(scores)
    return result


def test_s3_batched_equals_the_naive_loop(tiny: tuple[nn.Sequential, MaskedNetwork]) -> None:
    model, net = tiny
    calibration = _calibration(64)
    scorer = DivergenceScorer(memory_budget_mb=1)
    # the budget really splits the conv units' ablations over several forwards
    assert scorer.plan(net, 0, 64).ablations < net.units[0].num_neurons
    got = scorer.score(net, calibration)
    expected = _naive_s3(model, net, calibration.images)
    assert [s.shape for s in got] == [(4,), (6,), (8,), (5,)]
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    assert all((s > 0).any() for s in got)


@pytest.mark.parametrize(
    "options",
    [
        {"memory_budget_mb": 0},
        {"memory_budget_mb": 1},
        {"memory_budget_mb": 4},
        {"batch_size": 1},
        {"batch_size": 7},
        {"batch_size": 100_000},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_s3_does_not_depend_on_the_memory_budget_or_batch(
    tiny: tuple[nn.Sequential, MaskedNetwork], options: dict[str, int]
) -> None:
    _, net = tiny
    calibration = _calibration(32)
    large = DivergenceScorer(memory_budget_mb=512).score(net, calibration)
    other = DivergenceScorer(**options).score(net, calibration)
    for a, b in zip(other, large, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # float32 summation order


def test_s3_plans_fit_their_budget_and_cover_every_image(
    vgg_digits_net: MaskedNetwork,
) -> None:
    """Above the floor of one image and one ablation, the plan's estimate of everything
    held (reference, chunk activations, masked forwards, masks, sums) is within budget."""
    images = 256
    for budget_mb in (1, 2, 8, 64):
        scorer = DivergenceScorer(memory_budget_mb=budget_mb)
        for index, unit in enumerate(vgg_digits_net.units):
            plan = scorer.plan(vgg_digits_net, index, images)
            assert plan.peak_bytes() <= scorer.budget_bytes(vgg_digits_net) < budget_mb * 2**20
            assert 1 <= plan.ablations <= unit.num_neurons
            chunks = list(plan.image_chunks())
            assert sum(c.stop - c.start for c in chunks) == images and chunks[0].start == 0
            assert len(chunks) == -(-images // plan.image_chunk)
    tight = DivergenceScorer(memory_budget_mb=1).plan(vgg_digits_net, 0, images)
    assert tight.image_chunk < images  # the activations after a unit: never all at once


def test_s3_plan_below_the_floor_and_with_a_fixed_batch(
    tiny: tuple[nn.Sequential, MaskedNetwork],
) -> None:
    _, net = tiny
    floor = DivergenceScorer(memory_budget_mb=0).plan(net, 0, 10)
    assert (floor.image_chunk, floor.ablations) == (1, 1)
    fixed = DivergenceScorer(batch_size=12).plan(net, 0, 5)
    assert (fixed.image_chunk, fixed.ablations, fixed.samples_per_forward) == (5, 2, 10)
    with pytest.raises(InvalidParameterError, match="`--batch-size` must be at least 1"):
        DivergenceScorer(batch_size=0)


def test_s3_of_one_unit_or_some_neurons_equals_the_full_score(
    tiny: tuple[nn.Sequential, MaskedNetwork],
) -> None:
    _, net = tiny
    calibration = _calibration(16)
    scorer = DivergenceScorer(memory_budget_mb=1)
    full = scorer.score(net, calibration)
    np.testing.assert_allclose(scorer.score_unit(net, 2, calibration), full[2], atol=1e-7)
    some = scorer.score_unit(net, 2, calibration, neurons=range(1, 7, 2))
    np.testing.assert_allclose(some, full[2][1:7:2], atol=1e-7)


@pytest.mark.parametrize("name", SCORERS.names())
def test_scorers_run_on_an_explicit_cpu_device(
    tiny: tuple[nn.Sequential, MaskedNetwork], name: str
) -> None:
    """Scorers follow the network's device and return float64 numpy arrays on the host."""
    _, net = tiny
    net.to(torch.device("cpu"))
    scores = SCORERS.get(name)().score(net, _calibration(8))
    assert all(isinstance(s, np.ndarray) and s.dtype == np.float64 for s in scores)


def test_s3_on_the_convnext_digits_model_equals_masked_single_forwards(
    digits_net: Callable[[str], MaskedNetwork],
) -> None:
    """Permuted (NHWC) sync points and residuals: compare with one full masked forward each."""
    net = digits_net("digits-convnext")
    images = torch.randn((8, *net.example_shape), generator=torch.Generator().manual_seed(1))
    got = DivergenceScorer(memory_budget_mb=8).score(net, LabelledImages(images, torch.zeros(8)))
    with torch.no_grad():
        reference = torch.softmax(net(images), dim=-1).double().numpy()
        for index in (0, 1, 2, 3, 7, 14):
            unit = net.units[index]
            masks: list[Tensor | None] = [None] * len(net.units)
            for j in range(0, unit.num_neurons, 5):
                mask = torch.ones(1, unit.num_neurons)
                mask[0, j] = 0.0
                masks[index] = mask
                with net.masked(masks):
                    probs = torch.softmax(net(images), dim=-1).double().numpy()
                expected = _jsd_reference(reference, probs).mean()
                assert got[index][j] == pytest.approx(expected, abs=1e-6), (index, j)


# --------------------------------------------------------------------------- JSD
def _random_distributions(shape: tuple[int, ...], seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(shape, generator=generator, dtype=torch.float64), -1)


def test_jensen_shannon_properties() -> None:
    p, q = _random_distributions((50, 7), 0), _random_distributions((50, 7), 1)
    forward, backward = jensen_shannon(p, q), jensen_shannon(q, p)
    assert forward.shape == (50,)
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-12)
    assert torch.all(forward > 0) and torch.all(forward <= math.log(2))
    np.testing.assert_allclose(forward.numpy(), _jsd_reference(p.numpy(), q.numpy()), atol=1e-12)
    assert torch.all(jensen_shannon(p, p).abs() <= 1e-12)


def test_jensen_shannon_edge_values() -> None:
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    other = torch.tensor([[0.0, 0.0, 1.0]])
    assert jensen_shannon(one_hot, other).item() == pytest.approx(math.log(2))
    assert jensen_shannon(one_hot, one_hot).item() == 0.0
    assert not torch.isnan(jensen_shannon(one_hot, torch.tensor([[0.5, 0.5, 0.0]]))).any()


# --------------------------------------------------------------------------- contract suite
@pytest.mark.parametrize("name", SCORERS.names())
def test_every_scorer_returns_finite_nonnegative_scores_per_unit(
    tiny: tuple[nn.Sequential, MaskedNetwork], name: str
) -> None:
    _, net = tiny
    scorer = SCORERS.get(name)()
    assert scorer.name == name
    calibration = _calibration(16)
    first = scorer.score(net, calibration)
    second = scorer.score(net, calibration)
    assert [s.shape for s in first] == [(u.num_neurons,) for u in net.units]
    for a, b in zip(first, second, strict=True):
        assert a.dtype == np.float64
        assert np.isfinite(a).all() and (a >= 0).all()
        assert np.array_equal(a, b)
    json.dumps(scorer.settings())  # part of the cache key


# --------------------------------------------------------------------------- normalisation
def test_points_are_min_max_normalised_per_unit_and_score() -> None:
    scores = ImportanceScores(
        {
            "s1": (np.array([2.0, 4.0, 3.0]), np.array([5.0, 5.0])),
            "s3": (np.array([0.0, 0.1, 0.05]), np.array([-1.0, 1.0])),
        }
    )
    unit0, unit1 = scores.points(["s1", "s3"])
    np.testing.assert_allclose(unit0, [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(unit1, [[0.0, 0.0], [0.0, 1.0]])  # constant column -> zeros
    (only,) = scores.points(["s3"])[:1]
    assert only.shape == (3, 1)
    with pytest.raises(InvalidParameterError, match="were not computed"):
        scores.points(["s2"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_rejected_naming_the_unit_and_score(bad: float) -> None:
    """A NaN/inf score used to become 0 for the whole unit, silently."""
    scores = ImportanceScores(
        {
            "s1": (np.array([1.0, 2.0]), np.array([1.0, 2.0])),
            "s2": (np.array([1.0, 2.0]), np.array([0.5, bad])),
        },
        unit_names=("features.0", "features.3"),
    )
    scores.points(["s1"])  # only the selected scores are used, and checked
    with pytest.raises(InvalidParameterError, match=r"`s2` of unit `features\.3` .*neuron 1"):
        scores.points(["s1", "s2"])


def test_compute_scores_names_the_unit_of_a_non_finite_score(
    tiny: tuple[nn.Sequential, MaskedNetwork],
) -> None:
    _, net = tiny

    class Broken(MagnitudeScorer):
        def score(
            self, net: MaskedNetwork, calibration: LabelledImages | None
        ) -> list[np.ndarray]:
            scores = super().score(net, calibration)
            scores[1][0] = math.nan
            return scores

    scores = compute_scores(
        net, None, ["s1"], weights_hash="w0", scorers={"s1": Broken()}, use_cache=False
    )
    assert scores.unit_names == tuple(u.name for u in net.units)
    with pytest.raises(InvalidParameterError, match=f"`s1` of unit `{net.units[1].name}`"):
        scores.points(["s1"])


def test_points_of_real_scores_lie_in_the_unit_cube(
    tiny: tuple[nn.Sequential, MaskedNetwork],
) -> None:
    _, net = tiny
    raw = {"s1": tuple(MagnitudeScorer().score(net, _calibration(4)))}
    raw["s2"] = tuple(TaylorScorer().score(net, _calibration(16)))
    for points in ImportanceScores(raw).points(["s1", "s2"]):
        assert points.min() >= 0.0 and points.max() <= 1.0
        assert np.allclose(points.min(axis=0), 0.0) and np.allclose(points.max(axis=0), 1.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("s1", ("s1",)), (" s1 , s3 ", ("s1", "s3")), (["s2", "s1"], ("s2", "s1"))],
)
def test_parse_score_names(text: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_score_names(text) == expected


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", InvalidParameterError, "at least one"),
        (" , ", InvalidParameterError, "at least one"),
        ([], InvalidParameterError, "at least one"),
        ("s1,s4", UnknownNameError, "unknown importance score `s4`; choose one of: s1, s2, s3"),
        ("s1,s2,s1", InvalidParameterError, "twice"),
    ],
)
def test_parse_score_names_rejects(text: str | list[str], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_score_names(text)


# --------------------------------------------------------------------------- cache
class _Counting(ImportanceScorer):
    """Wraps a scorer, counting calls; ``fail`` makes any call an error."""

    def __init__(self, inner: ImportanceScorer, *, fail: bool = False) -> None:
        self.inner, self.fail, self.calls = inner, fail, 0
        self.name = inner.name

    def settings(self) -> dict[str, object]:
        return self.inner.settings()

    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        if self.fail:
            raise AssertionError("the cache should have answered")
        self.calls += 1
        return self.inner.score(net, calibration)


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROBUSTDICE_CACHE", str(tmp_path))
    return tmp_path


def test_second_call_loads_from_disk(
    tiny: tuple[nn.Sequential, MaskedNetwork], cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, net = tiny
    calibration = _calibration(16)
    first = compute_scores(net, calibration, ["s1", "s2"], weights_hash="w0")
    files = sorted(p.name for p in (cache_root / "scores").iterdir())
    assert len(files) == 2 and files[0].startswith("s1-") and files[1].startswith("s2-")

    def boom(self: ImportanceScorer, net: MaskedNetwork, data: LabelledImages) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(MagnitudeScorer, "score", boom)
    monkeypatch.setattr(TaylorScorer, "score", boom)
    second = compute_scores(net, calibration, ["s2", "s1"], weights_hash="w0")
    for name in ("s1", "s2"):
        for a, b in zip(first.raw[name], second.raw[name], strict=True):
            assert np.array_equal(a, b) and b.dtype == np.float64
    with pytest.raises(AssertionError, match="cache should have answered"):
        compute_scores(net, _calibration(16, seed=1), ["s1"], weights_hash="w0")
    with pytest.raises(AssertionError, match="cache should have answered"):
        compute_scores(net, calibration, ["s1"], weights_hash="w1")


def test_settings_are_part_of_the_key(
    tiny: tuple[nn.Sequential, MaskedNetwork], cache_root: Path
) -> None:
    _, net = tiny
    calibration = _calibration(16)
    compute_scores(net, calibration, ["s2"], weights_hash="w0")
    other = _Counting(TaylorScorer(use_labels=False))
    compute_scores(net, calibration, ["s2"], weights_hash="w0", scorers={"s2": other})
    assert other.calls == 1
    cached = _Counting(TaylorScorer(), fail=True)
    compute_scores(net, calibration, ["s2"], weights_hash="w0", scorers={"s2": cached})


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-units"])
def test_corrupt_cache_file_is_recomputed(
    tiny: tuple[nn.Sequential, MaskedNetwork], cache_root: Path, damage: str
) -> None:
    _, net = tiny
    calibration = _calibration(8)
    original = compute_scores(net, calibration, ["s1"], weights_hash="w0").raw["s1"]
    (path,) = (cache_root / "scores").iterdir()
    if damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        from safetensors.torch import save_file

        save_file({"unit_0": torch.zeros(4, dtype=torch.float64)}, str(path))
    counting = _Counting(MagnitudeScorer())
    again = compute_scores(net, calibration, ["s1"], weights_hash="w0", scorers={"s1": counting})
    assert counting.calls == 1
    for a, b in zip(original, again.raw["s1"], strict=True):
        assert np.array_equal(a, b)
    # the recomputed entry was written back and is valid
    cached = _Counting(MagnitudeScorer(), fail=True)
    compute_scores(net, calibration, ["s1"], weights_hash="w0", scorers={"s1": cached})


def test_use_cache_false_neither_reads_nor_writes(
    tiny: tuple[nn.Sequential, MaskedNetwork], cache_root: Path
) -> None:
    _, net = tiny
    counting = _Counting(MagnitudeScorer())
    for _ in range(2):
        compute_scores(
            net,
            _calibration(8),
            ["s1"],
            weights_hash="w",
            scorers={"s1": counting},
            use_cache=False,
        )
    assert counting.calls == 2
    assert not (cache_root / "scores").exists() or not any((cache_root / "scores").iterdir())


# --------------------------------------------------------------------------- no data
def test_only_s1_works_without_calibration_data(
    tiny: tuple[nn.Sequential, MaskedNetwork],
) -> None:
    _, net = tiny
    assert MagnitudeScorer().score(net, None)[0].shape == (4,)
    assert not MagnitudeScorer.needs_data
    empty = LabelledImages(torch.zeros(0, *INPUT), torch.zeros(0, dtype=torch.int64))
    for scorer in (TaylorScorer(), DivergenceScorer()):
        assert scorer.needs_data
        for calibration in (None, empty):
            with pytest.raises(InvalidParameterError, match=f"`{scorer.name}` needs calibration"):
                scorer.score(net, calibration)


def test_weights_only_scores_are_cached_without_data(
    tiny: tuple[nn.Sequential, MaskedNetwork], cache_root: Path
) -> None:
    _, net = tiny
    first = compute_scores(net, None, ["s1"], weights_hash="w0")
    cached = _Counting(MagnitudeScorer(), fail=True)
    again = compute_scores(net, None, ["s1"], weights_hash="w0", scorers={"s1": cached})
    assert all(np.array_equal(a, b) for a, b in zip(first.raw["s1"], again.raw["s1"]))
    with pytest.raises(InvalidParameterError, match="`s2` needs calibration"):
        compute_scores(net, None, ["s2"], weights_hash="w0")


def test_s3_with_a_tiny_memory_budget_chunks_images_and_agrees(
    vgg_digits_net: MaskedNetwork, digits_data: EvalData
) -> None:
    """A budget below one ablation's activations splits the images; the scores stay the same."""
    calibration = LabelledImages(
        digits_data.calibration.images[:24], digits_data.calibration.labels[:24]
    )
    roomy = DivergenceScorer(memory_budget_mb=64).score(vgg_digits_net, calibration)
    tight = DivergenceScorer(memory_budget_mb=0).score(vgg_digits_net, calibration)
    for a, b in zip(roomy, tight, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # float32 batch-size noise
