"""Model zoo and evaluation data (DESIGN 3.6)."""

from __future__ import annotations

from robustdice_core.zoo._data import EvalData, LabelledImages, digits_splits, image_folder_data
from robustdice_core.zoo._registry import (
    MODELS,
    RANDOM_WEIGHTS,
    LoadedModel,
    ModelRegistry,
    ModelSpec,
    load_model,
    load_state_dict_file,
)
from robustdice_core.zoo._seeds import SEED_SUFFIX, SeededName, seeded_name, split_seed
from robustdice_core.zoo._specs import DEFAULT_MODEL, DigitsSpec, TorchvisionSpec
from robustdice_core.zoo._training import TrainingRecipe

__all__ = [
    "DEFAULT_MODEL",
    "DigitsSpec",
    "EvalData",
    "LabelledImages",
    "LoadedModel",
    "MODELS",
    "RANDOM_WEIGHTS",
    "SEED_SUFFIX",
    "ModelRegistry",
    "ModelSpec",
    "SeededName",
    "TorchvisionSpec",
    "TrainingRecipe",
    "digits_splits",
    "image_folder_data",
    "load_model",
    "load_state_dict_file",
    "seeded_name",
    "split_seed",
]
