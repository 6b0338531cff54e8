"""s1: the L1 norm of a neuron's weights plus |bias| (Algorithm 1, line 7)."""

from __future__ import annotations

import numpy as np
import torch

from robustdice_core.importance._base import ImportanceScorer, layer_of
from robustdice_core.masking import MaskedNetwork
from robustdice_core.zoo import LabelledImages

__all__ = ["MagnitudeScorer"]


class MagnitudeScorer(ImportanceScorer):
    name = "s1"
    needs_data = False

    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        scores = []
        with torch.no_grad():
            for unit in net.units:
                layer = layer_of(net, unit.name)
                value = layer.weight.abs().flatten(1).sum(dim=1)
                if layer.bias is not None:
                    value = value + layer.bias.abs()
                scores.append(value.double().cpu().numpy())
        return scores
