"""Deterministic training of the reference CNNs on the digits train split, cached on disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from robustdice_core._cache import atomic_write_bytes, cache_dir, hash_json
from robustdice_core.zoo._data import LabelledImages

__all__ = ["TrainingRecipe", "trained_state_dict", "weights_cache_path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRecipe:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def trained_state_dict(
    name: str,
    model: nn.Module,
    train: LabelledImages,
    recipe: TrainingRecipe,
) -> dict[str, torch.Tensor]:
    """Load the cached weights for (model, data, recipe) or train them once and cache them."""
    key = _cache_key(name, train, recipe)
    path = _cache_path(name, key)
    if path.exists():
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            log.warning("cached weights %s are unreadable (%s); retraining.", path, err)
    state = _train(model, train, recipe)
    atomic_write_bytes(path, save(state, metadata={"model": name, "key": key}))
    return state


def weights_cache_path(name: str, train: LabelledImages, recipe: TrainingRecipe) -> Path:
    """Where the weights trained for (model, data, recipe) are cached (they may not be yet)."""
    return _cache_path(name, _cache_key(name, train, recipe))


def _cache_key(name: str, train: LabelledImages, recipe: TrainingRecipe) -> str:
    return hash_json(
        {
            "model": name,
            "data": train.fingerprint(),
            "recipe": asdict(recipe),
            "torch": torch.__version__.split("+")[0],
            "format": 2,  # 2: trained on one thread
        }
    )[:16]


def _cache_path(name: str, key: str) -> Path:
    return cache_dir() / "models" / f"{name}-{key}.safetensors"


@contextmanager
def _one_thread() -> Iterator[None]:
    """Parallel reductions sum in an order that depends on the thread count, and training
    amplifies the last-bit differences into another model: train on one thread, always."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(
    model: nn.Module, train: LabelledImages, recipe: TrainingRecipe
) -> dict[str, torch.Tensor]:
    with _one_thread():
        return _train_steps(model, train, recipe)


def _train_steps(
    model: nn.Module, train: LabelledImages, recipe: TrainingRecipe
) -> dict[str, torch.Tensor]:
    torch.manual_seed(recipe.seed)
    for module in model.modules():  # deterministic re-initialisation from the seed
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps = recipe.epochs * -(-len(train) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.learning_rate, total_steps=steps
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(train.images[batch]), train.labels[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
