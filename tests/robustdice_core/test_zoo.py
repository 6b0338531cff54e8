"""Model zoo and evaluation data (DESIGN 3.6): real by default, embedded offline, clear errors."""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor
from torchvision import transforms

from robustdice_core import (
    CorruptFileError,
    InvalidParameterError,
    MissingResourceError,
    UnknownNameError,
)
from robustdice_core.zoo import (
    DEFAULT_MODEL,
    MODELS,
    RANDOM_WEIGHTS,
    DigitsSpec,
    LoadedModel,
    TorchvisionSpec,
    TrainingRecipe,
    _training,
    digits_splits,
    image_folder_data,
    load_model,
)
from robustdice_core.zoo._reference import DigitsAlexNet

pytestmark = pytest.mark.usefixtures("single_torch_thread")

DIGITS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")


# --------------------------------------------------------------------------- registry
def test_registry_lists_the_models() -> None:
    assert set(MODELS.names()) == {*DIGITS, "alexnet", "vgg16_bn", "convnext_tiny"}
    assert DEFAULT_MODEL in MODELS
    assert isinstance(MODELS.get("convnext_tiny"), TorchvisionSpec)
    assert isinstance(MODELS.get("digits-convnext"), DigitsSpec)


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_model("resnet-9000")
    message = str(info.value)
    assert "unknown model `resnet-9000`" in message
    for name in MODELS.names():
        assert name in message
    assert isinstance(info.value, KeyError)


# --------------------------------------------------------------------------- digits models
@pytest.mark.parametrize("name", DIGITS)
def test_digits_models_are_accurate(digits_model: Callable[[str], LoadedModel], name: str) -> None:
    model = digits_model(name)
    assert model.has_weights and model.weights_source == "trained:digits (cached)"
    assert not model.module.training
    test = model.spec.eval_data(None, calibration_size=None, test_size=None).test
    with torch.no_grad():
        accuracy = (model.module(test.images).argmax(dim=1) == test.labels).float().mean()
    assert float(accuracy) >= 0.95


def test_weights_hash_is_stable(digits_model: Callable[[str], LoadedModel]) -> None:
    model = digits_model("digits-alexnet")
    assert model.weights_hash() == model.weights_hash()
    assert model.weights_hash() != digits_model("digits-vgg-bn").weights_hash()


def test_digits_splits_are_fixed_and_disjoint() -> None:
    train, calibration, test = digits_splits()
    assert (len(train), len(calibration), len(test)) == (1797 - 256 - 500, 256, 500)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.float32
    again = digits_splits()
    assert torch.equal(again[2].images, test.images) and torch.equal(again[2].labels, test.labels)
    rows = {tuple(x.flatten().tolist()) for x in calibration.images}
    assert not rows & {tuple(x.flatten().tolist()) for x in test.images[:100]}
    assert set(test.labels.tolist()) == set(range(10))


def test_digits_eval_data_sizes_and_no_folder() -> None:
    spec = MODELS.get("digits-vgg-bn")
    data = spec.eval_data(None, calibration_size=32, test_size=50)
    assert (len(data.calibration), len(data.test)) == (32, 50)
    with pytest.raises(InvalidParameterError, match="`--data` is for ImageNet models"):
        spec.eval_data(Path("."), calibration_size=None, test_size=None)
    with pytest.raises(InvalidParameterError, match="`--test-size` 100000 is more than the 500"):
        spec.eval_data(None, calibration_size=None, test_size=100000)
    with pytest.raises(InvalidParameterError, match="`--calibration-size` 9999 is more"):
        spec.eval_data(None, calibration_size=9999, test_size=None)


def test_training_is_cached_and_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBUSTDICE_CACHE", str(tmp_path))
    train, _, _ = digits_splits()
    small = type(train)(train.images[:128], train.labels[:128])
    recipe = TrainingRecipe(epochs=1, batch_size=64)
    spec = MODELS.get("digits-alexnet")
    first = _training.trained_state_dict("digits-alexnet", spec.build(), small, recipe)
    (cached,) = (tmp_path / "models").iterdir()

    def boom(*args: object) -> dict[str, Tensor]:
        raise AssertionError("should have loaded the cached weights")

    monkeypatch.setattr(_training, "_train", boom)
    loaded = _training.trained_state_dict("digits-alexnet", spec.build(), small, recipe)
    assert first.keys() == loaded.keys()
    assert all(torch.equal(first[k], loaded[k]) for k in first)
    monkeypatch.undo()
    monkeypatch.setenv("ROBUSTDICE_CACHE", str(tmp_path))
    cached.write_bytes(b"corrupt")
    retrained = _training.trained_state_dict("digits-alexnet", spec.build(), small, recipe)
    assert all(torch.equal(first[k], retrained[k]) for k in first)  # same seed, same weights


def test_training_gives_the_same_weights_whatever_the_thread_count() -> None:
    train, _, _ = digits_splits()
    small = type(train)(train.images[:256], train.labels[:256])
    recipe = TrainingRecipe(epochs=2, batch_size=32)
    spec = MODELS.get("digits-vgg-bn")
    threads = torch.get_num_threads()
    states = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            states.append(_training._train(spec.build(), small, recipe))
            assert torch.get_num_threads() == count, "the caller's setting is restored"
    finally:
        torch.set_num_threads(threads)
    for state in states[1:]:
        assert all(torch.equal(states[0][k], state[k]) for k in state)


# --------------------------------------------------------------------------- torchvision
def test_missing_published_weights_name_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty torch hub cache and no network: a clear error, never random weights."""

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(MissingResourceError, match="pass `--weights PATH`") as info:
        load_model("alexnet")
    assert "AlexNet_Weights.IMAGENET1K_V1" in str(info.value)
    fallback = load_model("alexnet", require_weights=False)
    assert not fallback.has_weights
    assert fallback.weights_source == RANDOM_WEIGHTS


def _forbid_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An empty torch home at ``tmp_path`` and every download entry point recording calls."""
    calls: list[str] = []

    def download(*args: object, **kwargs: object) -> None:
        calls.append(str(args[0]) if args else "?")
        raise urllib.error.URLError("downloads are forbidden in this test")

    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() follows TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", download)
    return calls


def test_architecture_only_load_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dse optimize --objectives mem,energy` needs no weights: no download is attempted."""
    calls = _forbid_downloads(monkeypatch, tmp_path)
    loaded = load_model("alexnet", require_weights=False)
    assert calls == []
    assert not loaded.has_weights and loaded.weights_source == RANDOM_WEIGHTS


def test_architecture_only_load_uses_weights_already_in_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _forbid_downloads(monkeypatch, tmp_path)
    spec = TorchvisionSpec("squeezenet1_0", "SqueezeNet")  # small: a 5 MB state dict
    torch.manual_seed(3)
    state = spec.build().state_dict()
    filename = Path(urllib.parse.urlparse(spec.weights_enum.url).path).name
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / filename)
    cached, source = spec.default_state_dict(download=False)
    assert calls == []
    assert source == "published:SqueezeNet1_0_Weights.IMAGENET1K_V1"
    assert cached.keys() == state.keys() and all(torch.equal(cached[k], state[k]) for k in state)


def test_torchvision_eval_data_needs_a_folder() -> None:
    with pytest.raises(MissingResourceError, match="pass `--data PATH`"):
        MODELS.get("vgg16_bn").eval_data(None, calibration_size=None, test_size=None)


# --------------------------------------------------------------------------- --weights
def _random_state(name: str) -> dict[str, Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in MODELS.get(name).build().state_dict().items()}


def _assert_loaded(model: LoadedModel, state: dict[str, Tensor], path: Path) -> None:
    assert model.has_weights and model.weights_source == f"file:{path}"
    loaded = model.module.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("wrapped", [False, True])
def test_weights_from_a_torch_file(tmp_path: Path, wrapped: bool) -> None:
    state = _random_state("digits-convnext")
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": state} if wrapped else state, path)
    _assert_loaded(load_model("digits-convnext", weights=path), state, path)


def test_weights_from_a_safetensors_file(tmp_path: Path) -> None:
    state = _random_state("digits-vgg-bn")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    _assert_loaded(load_model("digits-vgg-bn", weights=path), state, path)


@pytest.mark.parametrize(
    ("filename", "content", "match"),
    [
        ("bad.pth", b"not a torch file", "cannot be read"),
        ("bad.safetensors", b"not a safetensors file", "cannot be read"),
        ("bad.pt", None, "does not hold a state dict"),
    ],
)
def test_corrupt_weights_file(
    tmp_path: Path, filename: str, content: bytes | None, match: str
) -> None:
    path = tmp_path / filename
    if content is None:
        torch.save({"epoch": 3, "lr": 0.1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=match):
        load_model("digits-alexnet", weights=path)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_weights_with_non_finite_values_are_rejected_by_name(tmp_path: Path, bad: float) -> None:
    state = _random_state("digits-alexnet")
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = bad
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(CorruptFileError, match=f"tensor `{re.escape(key)}` holds 1 NaN"):
        load_model("digits-alexnet", weights=path)


def test_weights_of_another_model_are_rejected(tmp_path: Path) -> None:
    """No parameter name in common: reported as missing / unexpected keys."""
    path = tmp_path / "convnext.pth"
    torch.save(_random_state("digits-convnext"), path)
    with pytest.raises(CorruptFileError, match="do not fit this model.*`--model`"):
        load_model("digits-alexnet", weights=path)


@pytest.mark.parametrize("source", ["five-classes", "digits-vgg-bn"])
def test_weights_with_mismatched_shapes_are_rejected(tmp_path: Path, source: str) -> None:
    """Same parameter names, other shapes (another head, or another model sharing names)."""
    if source == "five-classes":
        state = DigitsAlexNet(num_classes=5).state_dict()
    else:
        state = _random_state(source)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(CorruptFileError, match="do not fit this model"):
        load_model("digits-alexnet", weights=path)


def test_missing_weights_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(MissingResourceError, match="`--weights PATH`"):
        load_model("digits-alexnet", weights=tmp_path / "nope.pth")


# --------------------------------------------------------------------------- image folders
def _image_tree(root: Path, per_class: int = 3) -> Path:
    """Two classes of tiny solid-colour images; every image has its own colour."""
    for c, name in enumerate(("cat", "dog")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * i + 10, 100 * c + 20, 7 * i)
            Image.new("RGB", (10, 12), colour).save(folder / f"{i}.png")
    return root


_TINY = transforms.Compose([transforms.Resize((4, 4)), transforms.ToTensor()])


def test_image_folder_data(tmp_path: Path) -> None:
    root = _image_tree(tmp_path / "data")
    data = image_folder_data(root, _TINY, calibration_size=2, test_size=3)
    assert data.name == f"folder:{root}"
    assert data.calibration.images.shape == (2, 3, 4, 4)
    assert data.test.images.shape == (3, 3, 4, 4)
    labels = data.calibration.labels.tolist() + data.test.labels.tolist()
    assert set(labels) <= {0, 1} and data.test.labels.dtype == torch.int64
    pixels = [tuple(x[:, 0, 0].tolist()) for x in (*data.calibration.images, *data.test.images)]
    assert len(set(pixels)) == 5  # calibration and test are disjoint
    for x, label in zip((*data.calibration.images, *data.test.images), labels, strict=True):
        green = round(float(x[1, 0, 0]) * 255)
        assert green == 100 * label + 20  # the label is the class folder's (sorted) index
    again = image_folder_data(root, _TINY, calibration_size=2, test_size=3)
    assert torch.equal(again.test.images, data.test.images)
    other = image_folder_data(root, _TINY, calibration_size=2, test_size=3, seed=5)
    assert not torch.equal(
        torch.cat([other.calibration.images, other.test.images]),
        torch.cat([data.calibration.images, data.test.images]),
    )


def test_torchvision_spec_uses_the_models_own_transforms(tmp_path: Path) -> None:
    root = _image_tree(tmp_path / "data", per_class=2)
    for index in range(2, 1000):  # the other ImageNet classes: empty folders are enough
        (root / f"n{index:08d}").mkdir()
    data = MODELS.get("alexnet").eval_data(root, calibration_size=1, test_size=2)
    assert data.calibration.images.shape == (1, 3, 224, 224)
    assert len(data.test) == 2


def test_torchvision_spec_needs_a_folder_per_class(tmp_path: Path) -> None:
    root = _image_tree(tmp_path / "data", per_class=2)
    with pytest.raises(InvalidParameterError, match="2 class folders but the model predicts 1000"):
        MODELS.get("alexnet").eval_data(root, calibration_size=1, test_size=2)


def test_split_sizes_must_be_positive() -> None:
    with pytest.raises(InvalidParameterError, match="`--test-size` must be at least 1"):
        MODELS.get("digits-vgg-bn").eval_data(None, calibration_size=None, test_size=0)
    with pytest.raises(InvalidParameterError, match="`--calibration-size` must be at least 1"):
        MODELS.get("digits-vgg-bn").eval_data(None, calibration_size=-5, test_size=None)


def test_a_corrupt_image_is_named(tmp_path: Path) -> None:
    root = _image_tree(tmp_path / "data", per_class=2)
    broken = next(root.rglob("*.png"))
    broken.write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match=broken.name):
        image_folder_data(root, _TINY, calibration_size=2, test_size=2)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingResourceError, match="does not exist; pass `--data PATH`"):
        image_folder_data(tmp_path / "missing", _TINY, calibration_size=1, test_size=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingResourceError, match="holds no images"):
        image_folder_data(tmp_path / "empty", _TINY, calibration_size=1, test_size=1)
    root = _image_tree(tmp_path / "data", per_class=2)
    with pytest.raises(InvalidParameterError, match="has 4 images but 3 calibration \\+ 2 test"):
        image_folder_data(root, _TINY, calibration_size=3, test_size=2)


def test_architecture_only_weights_are_the_same_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An architecture-only study, its resume and its deployment must see one model."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached published weights
    first = load_model("alexnet", require_weights=False)
    torch.manual_seed(123)  # whatever the caller's random state
    second = load_model("alexnet", require_weights=False)
    assert not first.has_weights and first.weights_hash() == second.weights_hash()
