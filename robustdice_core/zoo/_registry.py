"""The model zoo: a registry of model specs and the loaders behind them (DESIGN 3.6)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from robustdice_core._cache import hash_tensors
from robustdice_core._errors import CorruptFileError, InvalidParameterError, MissingResourceError
from robustdice_core._registry import Registry
from robustdice_core.zoo._data import EvalData
from robustdice_core.zoo._seeds import SEED_SUFFIX, split_seed

__all__ = [
    "MODELS",
    "RANDOM_WEIGHTS",
    "LoadedModel",
    "ModelRegistry",
    "ModelSpec",
    "load_model",
    "load_state_dict_file",
]


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with where its weights came from."""

    spec: ModelSpec
    module: nn.Module
    weights_source: str  # e.g. "published:AlexNet_Weights.IMAGENET1K_V1", "file:/w.pth"
    has_weights: bool  # False: architecture only (random init), no accuracy allowed

    def weights_hash(self) -> str:
        return hash_tensors(self.module.state_dict())


class ModelSpec(ABC):
    """How to build a model, load its weights and get its evaluation data."""

    name: str
    family: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    # trained here on bundled data: has training seeds (NAME@seedN), needs no --weights/--data
    embedded: bool = False

    @abstractmethod
    def build(self) -> nn.Module:
        """The architecture with freshly initialised weights."""

    @abstractmethod
    def default_state_dict(self, *, download: bool = True) -> tuple[dict[str, Tensor], str]:
        """The model's own weights and a label of their source; MissingResourceError if none.

        Args:
            download: False: never reach for the network, use only what is stored locally.
        """

    def eval_data(
        self, data: Path | None, *, calibration_size: int | None, test_size: int | None
    ) -> EvalData:
        """Calibration and test images; MissingResourceError names the flag that supplies them."""
        for flag, size in (("--calibration-size", calibration_size), ("--test-size", test_size)):
            if size is not None and size < 1:
                raise InvalidParameterError(f"`{flag}` must be at least 1, got {size}.")
        return self._eval_data(data, calibration_size=calibration_size, test_size=test_size)

    @abstractmethod
    def _eval_data(
        self, data: Path | None, *, calibration_size: int | None, test_size: int | None
    ) -> EvalData: ...

    def weights_ready(self) -> bool:
        """Whether the model's own weights are on this machine already (no training, no
        download), so loading them is quick."""
        return False

    def with_seed(self, seed: int) -> ModelSpec:
        """This architecture trained with training seed ``seed`` (0: this spec itself).

        Only models that this project trains have seeds; the default refuses.
        """
        raise InvalidParameterError(
            f"model `{self.name}{SEED_SUFFIX}{seed}`: `{self.name}` is not trained here, so it "
            f"has no training seeds ({SEED_SUFFIX}N is for the embedded digits models); pass "
            "`--weights PATH` to use other weights."
        )


class ModelRegistry(Registry[ModelSpec]):
    """The model registry; ``NAME@seedN`` resolves to NAME's spec trained with seed N."""

    def __init__(self) -> None:
        super().__init__("model")
        self._variants: dict[str, ModelSpec] = {}

    def get(self, name: str) -> ModelSpec:
        parsed = split_seed(name)
        spec = super().get(parsed.base)
        if parsed.seed is None:
            return spec
        variant = spec.with_seed(parsed.seed)
        # one object per variant, whatever spelling (``@seed01``) asked for it
        return self._variants.setdefault(variant.name, variant)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except (KeyError, ValueError):  # UnknownNameError / InvalidParameterError
            return False
        return True


MODELS = ModelRegistry()


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a torch file (plain or ``{"state_dict": ...}``)."""
    if not path.is_file():
        raise MissingResourceError(
            f"weights file `{path}` does not exist; pass `--weights PATH` to a state dict."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch/safetensors raise many types for bad files
        raise CorruptFileError(f"weights file `{path}` cannot be read: {err}") from err
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CorruptFileError(f"weights file `{path}` does not hold a state dict of tensors.")
    return loaded


def _apply_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    _check_finite(state, source)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same keys, other shapes
        first = str(err).strip().splitlines()[-1].strip()
        raise CorruptFileError(
            f"weights from {source} do not fit this model ({first}); check that the file "
            "belongs to the chosen `--model`."
        ) from err
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:3])}")
    if problems:
        raise CorruptFileError(
            f"weights from {source} do not fit this model ({'; '.join(problems)}); check that "
            "the file belongs to the chosen `--model`."
        )


def _check_finite(state: dict[str, Tensor], source: str) -> None:
    """Weights with NaN or inf make every method read chance accuracy: refuse them by name."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CorruptFileError(
                f"weights from {source}: tensor `{key}` holds {bad} NaN or infinite value(s); "
                "the file is damaged or from a diverged training run."
            )


RANDOM_WEIGHTS = "random (architecture only, seed 0)"


def _seeded_build(spec: ModelSpec) -> nn.Module:
    """The architecture with initial weights from a fixed seed, so that an architecture-only
    study, its resume and its deployment all see the same weights (and weights hash)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return spec.build()


def load_model(
    name: str,
    *,
    weights: Path | None = None,
    require_weights: bool = True,
) -> LoadedModel:
    """Build a registered model and load its weights.

    Args:
        name: a registered model name (`MODELS.names()`).
        weights: a local state-dict file that overrides the model's own weights.
        require_weights: when False, the run needs the architecture only: weights already
            stored locally are used, nothing is downloaded, and without them the architecture
            comes with random weights (for cost-only work; never for accuracy).
    """
    spec = MODELS.get(name)
    module = spec.build()
    if weights is not None:
        state, source = load_state_dict_file(weights), f"file:{weights}"
    else:
        try:
            state, source = spec.default_state_dict(download=require_weights)
        except MissingResourceError:
            if require_weights:
                raise
            return LoadedModel(spec, _seeded_build(spec).eval(), RANDOM_WEIGHTS, False)
    _apply_state_dict(module, state, source)
    return LoadedModel(spec, module.eval(), source, has_weights=True)
