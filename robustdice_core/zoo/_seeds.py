"""Training-seed variants of a model name: ``digits-vgg-bn@seed1`` (issue 10).

The plain name is seed 0. A suffix names the same architecture trained with another seed, so
a study can report a mean and spread over several trainings instead of one lucky model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from robustdice_core._errors import InvalidParameterError

__all__ = ["MAX_SEED", "SEED_SUFFIX", "SeededName", "seeded_name", "split_seed"]

SEED_SUFFIX = "@seed"
MAX_SEED = 2**32 - 1  # torch.manual_seed takes larger ones; no training needs them
_SUFFIX = re.compile(r"@seed(?P<seed>[0-9]+)")


@dataclass(frozen=True)
class SeededName:
    """A model name split into its registered base name and its training seed."""

    base: str
    seed: int | None  # None: no suffix (the base model as registered)


def split_seed(name: str) -> SeededName:
    """``"digits-vgg-bn@seed1"`` -> ``SeededName("digits-vgg-bn", 1)``; no ``@``: seed None.

    Raises:
        InvalidParameterError: the part after ``@`` is not ``seed<N>`` with 0 <= N <= 2^32-1.
    """
    base, at, suffix = name.partition("@")
    if not at:
        return SeededName(name, None)
    match = _SUFFIX.fullmatch(at + suffix)
    if not base or match is None:
        raise InvalidParameterError(
            f"model `{name}`: a training seed is written `NAME{SEED_SUFFIX}N` with N a whole "
            f"number from 0, e.g. `digits-vgg-bn{SEED_SUFFIX}1`."
        )
    seed = int(match["seed"])
    if seed > MAX_SEED:
        raise InvalidParameterError(
            f"model `{name}`: the training seed must be at most {MAX_SEED}, got {seed}."
        )
    return SeededName(base, seed)


def seeded_name(base: str, seed: int) -> str:
    """The canonical name of ``base`` trained with ``seed`` (seed 0 is the plain name)."""
    return base if seed == 0 else f"{base}{SEED_SUFFIX}{seed}"
