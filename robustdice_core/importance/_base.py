"""The importance-scorer extension point: one score per neuron of every unit."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from torch import nn

from robustdice_core._errors import InvalidParameterError
from robustdice_core.masking import MaskedNetwork
from robustdice_core.zoo import LabelledImages

__all__ = ["ImportanceScorer", "layer_of", "require_data"]


class ImportanceScorer(ABC):
    """Scores every neuron of every unit of a network on a calibration set."""

    name: str
    needs_data: bool = True  # False: computable from the weights alone

    def settings(self) -> dict[str, object]:
        """Everything besides weights and data that changes the scores (for the cache key)."""
        return {}

    @abstractmethod
    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        """Raw (unnormalised) scores, one ``[n_i]`` float64 array per unit."""


def require_data(scorer: ImportanceScorer, calibration: LabelledImages | None) -> LabelledImages:
    if calibration is None or len(calibration) == 0:
        raise InvalidParameterError(
            f"importance score `{scorer.name}` needs calibration images; use `s1` (weights "
            "only) or supply data."
        )
    return calibration


def layer_of(net: MaskedNetwork, unit_name: str) -> nn.Conv2d | nn.Linear:
    layer = net.graph_module.get_submodule(unit_name)
    assert isinstance(layer, (nn.Conv2d, nn.Linear))
    return layer
