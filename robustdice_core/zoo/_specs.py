"""The registered models: three embedded digits CNNs and torchvision's paper models."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from robustdice_core._errors import InvalidParameterError, MissingResourceError
from robustdice_core.zoo._data import EvalData, digits_splits, image_folder_data
from robustdice_core.zoo._reference import DigitsAlexNet, DigitsConvNeXt, DigitsVGGBN
from robustdice_core.zoo._registry import MODELS, ModelSpec, load_state_dict_file
from robustdice_core.zoo._seeds import SEED_SUFFIX, seeded_name, split_seed
from robustdice_core.zoo._training import TrainingRecipe, trained_state_dict, weights_cache_path

__all__ = ["DigitsSpec", "TorchvisionSpec", "DEFAULT_MODEL"]

DEFAULT_MODEL = "digits-vgg-bn"


class DigitsSpec(ModelSpec):
    """An embedded reference CNN, trained on first use on scikit-learn's digits."""

    input_shape = (1, 8, 8)
    num_classes = 10
    embedded = True

    def __init__(
        self,
        name: str,
        family: str,
        factory: Callable[[], nn.Module],
        recipe: TrainingRecipe | None = None,
    ) -> None:
        self.name = name
        self.family = family
        self._factory = factory
        self._recipe = recipe or TrainingRecipe()
        self.description = f"embedded {family} CNN on 8x8 digits (scikit-learn), trained locally"
        if self._recipe.seed:
            self.description += f" with training seed {self._recipe.seed}"
        else:
            self.description += f"; other training seeds: {name}{SEED_SUFFIX}1, @seed2, ..."

    @property
    def recipe(self) -> TrainingRecipe:
        return self._recipe

    def with_seed(self, seed: int) -> DigitsSpec:
        """The same architecture and recipe, trained with ``seed`` (``NAME@seedN``).

        Seed 0 is this spec under its plain name: today's weights and cache entry.
        """
        if seed == self._recipe.seed:
            return self
        base = split_seed(self.name).base
        recipe = replace(self._recipe, seed=seed)
        return DigitsSpec(seeded_name(base, seed), self.family, self._factory, recipe)

    def build(self) -> nn.Module:
        return self._factory()

    def weights_ready(self) -> bool:
        train, _, _ = digits_splits()
        return weights_cache_path(self.name, train, self._recipe).exists()

    def default_state_dict(self, *, download: bool = True) -> tuple[dict[str, Tensor], str]:
        """Trained locally (or read from the cache): no network either way."""
        train, _, _ = digits_splits()
        state = trained_state_dict(self.name, self.build(), train, self._recipe)
        seed = f" seed {self._recipe.seed}" if self._recipe.seed else ""
        return state, f"trained:digits{seed} (cached)"

    def _eval_data(
        self, data: Path | None, *, calibration_size: int | None, test_size: int | None
    ) -> EvalData:
        if data is not None:
            raise InvalidParameterError(
                f"`--data` is for ImageNet models; `{self.name}` uses the embedded digits set."
            )
        _, calibration, test = digits_splits()
        for flag, size, available in (
            ("--calibration-size", calibration_size, len(calibration)),
            ("--test-size", test_size, len(test)),
        ):
            if size is not None and size > available:
                raise InvalidParameterError(
                    f"`{flag}` {size} is more than the {available} images of the digits set's "
                    f"split; pass at most {available}."
                )
        if calibration_size is not None:
            calibration = type(calibration)(
                calibration.images[:calibration_size], calibration.labels[:calibration_size]
            )
        if test_size is not None:
            test = type(test)(test.images[:test_size], test.labels[:test_size])
        return EvalData("digits", calibration, test)


class TorchvisionSpec(ModelSpec):
    """A torchvision ImageNet classifier through torchvision's own weights API."""

    input_shape = (3, 224, 224)
    num_classes = 1000

    def __init__(self, name: str, family: str) -> None:
        self.name = name
        self.family = family
        self.description = f"torchvision {name} (ImageNet-1K, published weights)"

    @property
    def weights_enum(self) -> torchvision.models.WeightsEnum:
        return torchvision.models.get_model_weights(self.name).DEFAULT

    def build(self) -> nn.Module:
        return torchvision.models.get_model(self.name, weights=None)

    def weights_ready(self) -> bool:
        return self.cached_weights_path().is_file()

    def cached_weights_path(self) -> Path:
        """Where torch's hub cache keeps the published weights (`torch.hub.get_dir()`)."""
        filename = Path(urllib.parse.urlparse(self.weights_enum.url).path).name
        return Path(torch.hub.get_dir()) / "checkpoints" / filename

    def default_state_dict(self, *, download: bool = True) -> tuple[dict[str, Tensor], str]:
        weights = self.weights_enum
        if not download:
            cached = self.cached_weights_path()
            if not cached.is_file():
                raise MissingResourceError(
                    f"the published weights {weights} for `{self.name}` are not in torch's "
                    f"cache ({cached}) and downloading is off; pass `--weights PATH` to a local "
                    "state dict."
                )
            return load_state_dict_file(cached), f"published:{weights}"
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as err:  # urllib/hash/IO errors: all mean "not available here"
            raise MissingResourceError(
                f"the published weights {weights} for `{self.name}` are not in torch's cache "
                f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded ({err}); "
                "pass `--weights PATH` to a local state dict."
            ) from err
        return state, f"published:{weights}"

    def _eval_data(
        self, data: Path | None, *, calibration_size: int | None, test_size: int | None
    ) -> EvalData:
        if data is None:
            raise MissingResourceError(
                f"`{self.name}` is evaluated on ImageNet, which is not bundled; pass "
                "`--data PATH` to an ImageNet-style folder (one sub-folder per class)."
            )
        return image_folder_data(
            data,
            self.weights_enum.transforms(),
            calibration_size=256 if calibration_size is None else calibration_size,
            test_size=1000 if test_size is None else test_size,
            num_classes=self.num_classes,
        )


for _spec in (
    DigitsSpec("digits-alexnet", "AlexNet-like", DigitsAlexNet),
    DigitsSpec("digits-vgg-bn", "VGG-BN-like", DigitsVGGBN),
    DigitsSpec("digits-convnext", "ConvNeXt-like", DigitsConvNeXt),
    TorchvisionSpec("alexnet", "AlexNet"),
    TorchvisionSpec("vgg16_bn", "VGG-BN"),
    TorchvisionSpec("convnext_tiny", "ConvNeXt"),
):
    MODELS.add(_spec.name, _spec)
