"""The importance-scorer extension point: one score per neuron of every unit."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from torch import nn

from robustdice_core.masking import MaskedNetwork
from robustdice_core.zoo import LabelledImages

__all__ = ["ImportanceScorer", "layer_of"]


class ImportanceScorer(ABC):
    """Scores every neuron of every unit of a network on a calibration set."""

    name: str

    def settings(self) -> dict[str, object]:
        """Everything besides weights and data that changes the scores (for the cache key)."""
        return {}

    @abstractmethod
    def score(self, net: MaskedNetwork, calibration: LabelledImages) -> list[np.ndarray]:
        """Raw (unnormalised) scores, one ``[n_i]`` float64 array per unit."""


def layer_of(net: MaskedNetwork, unit_name: str) -> nn.Conv2d | nn.Linear:
    layer = net.graph_module.get_submodule(unit_name)
    assert isinstance(layer, (nn.Conv2d, nn.Linear))
    return layer
