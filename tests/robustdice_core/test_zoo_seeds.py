"""Training-seed variants of the embedded models: ``digits-vgg-bn@seed1`` (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustdice_core import InvalidParameterError, UnknownNameError
from robustdice_core.zoo import (
    MODELS,
    DigitsSpec,
    SeededName,
    TorchvisionSpec,
    TrainingRecipe,
    seeded_name,
    split_seed,
)
from robustdice_core.zoo._reference import DigitsAlexNet

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("digits-vgg-bn", SeededName("digits-vgg-bn", None)),
        ("digits-vgg-bn@seed0", SeededName("digits-vgg-bn", 0)),
        ("digits-vgg-bn@seed12", SeededName("digits-vgg-bn", 12)),
        ("digits-vgg-bn@seed007", SeededName("digits-vgg-bn", 7)),
        (f"x@seed{2**32 - 1}", SeededName("x", 2**32 - 1)),
    ],
)
def test_split_seed(name: str, expected: SeededName) -> None:
    assert split_seed(name) == expected


@pytest.mark.parametrize(
    "name",
    ["a@seedx", "a@seed-1", "a@seed", "a@", "@seed1", "a@seed1@seed2", "a@Seed1", "a@seed 1"],
)
def test_malformed_suffix_is_one_clear_line(name: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        MODELS.get(name)
    message = str(info.value)
    assert f"`{name}`" in message and "`NAME@seedN`" in message and "\n" not in message


def test_seed_out_of_range() -> None:
    with pytest.raises(InvalidParameterError, match="at most 4294967295, got 4294967296"):
        split_seed("digits-alexnet@seed4294967296")


@pytest.mark.parametrize("name", ["alexnet@seed1", "vgg16_bn@seed0", "convnext_tiny@seed2"])
def test_torchvision_models_have_no_training_seeds(name: str) -> None:
    with pytest.raises(InvalidParameterError, match="has no training seeds") as info:
        MODELS.get(name)
    assert "`--weights PATH`" in str(info.value)
    assert name not in MODELS


def test_unknown_base_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="unknown model `digits-resnet`; choose one of"):
        MODELS.get("digits-resnet@seed1")


def test_registry_resolves_seeds() -> None:
    plain = MODELS.get("digits-vgg-bn")
    assert MODELS.get("digits-vgg-bn@seed0") is plain  # seed 0 is today's model, same cache
    assert isinstance(plain, DigitsSpec) and plain.recipe == TrainingRecipe()
    one = MODELS.get("digits-vgg-bn@seed1")
    assert isinstance(one, DigitsSpec)
    assert one.name == "digits-vgg-bn@seed1" and one.recipe.seed == 1
    assert MODELS.get("digits-vgg-bn@seed01") is one  # one canonical spec per variant
    assert one.family == plain.family and one.input_shape == plain.input_shape
    assert type(one.build()) is type(plain.build())
    assert "digits-vgg-bn@seed3" in MODELS and "digits-vgg-bn@seedx" not in MODELS
    assert MODELS.names() == sorted(MODELS.names()) and "digits-vgg-bn@seed1" not in MODELS.names()


def test_only_embedded_models_are_trained_here() -> None:
    assert MODELS.get("digits-alexnet").embedded and MODELS.get("digits-alexnet@seed2").embedded
    assert not MODELS.get("alexnet").embedded


def test_descriptions_mention_the_suffix() -> None:
    """`dse models` prints these descriptions."""
    assert "digits-alexnet@seed1" in MODELS.get("digits-alexnet").description
    assert "training seed 2" in MODELS.get("digits-alexnet@seed2").description


def test_seeded_name_is_canonical() -> None:
    assert seeded_name("digits-convnext", 0) == "digits-convnext"
    assert seeded_name("digits-convnext", 3) == "digits-convnext@seed3"
    assert split_seed(seeded_name("m", 5)) == SeededName("m", 5)


def test_another_seed_trains_another_model_reproducibly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One short epoch: the seed changes the weights, and the same seed gives the same ones."""
    base = DigitsSpec("digits-alexnet", "AlexNet-like", DigitsAlexNet, TrainingRecipe(epochs=1))
    variant = base.with_seed(1)
    assert variant.name == "digits-alexnet@seed1" and variant.recipe.epochs == 1
    assert base.with_seed(0) is base
    states = []
    for run, spec in enumerate((base, variant, variant)):
        monkeypatch.setenv("ROBUSTDICE_CACHE", str(tmp_path / str(run)))  # train every time
        assert not spec.weights_ready()
        state, source = spec.default_state_dict()
        assert spec.weights_ready()  # cached: the next load is quick
        states.append(state)
    assert source == "trained:digits seed 1 (cached)"
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert all(torch.equal(states[1][k], states[2][k]) for k in states[1])
    (cached,) = (tmp_path / "2" / "models").iterdir()
    assert cached.name.startswith("digits-alexnet@seed1-")


def test_torchvision_weights_ready_means_in_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    spec = MODELS.get("alexnet")
    assert isinstance(spec, TorchvisionSpec) and not spec.weights_ready()
    path = spec.cached_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert spec.weights_ready()
