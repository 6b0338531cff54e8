"""s3: Jensen-Shannon divergence between the softmax output with and without a neuron.

The neuron is zeroed at its unit's sync point (DESIGN 3.2). Per unit, the activations just
after the sync point are computed once for the calibration set; then many single-neuron
ablations are evaluated per forward of the rest of the network, as sample groups with one
mask each.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor

from robustdice_core.importance._base import ImportanceScorer, require_data
from robustdice_core.masking import MaskedNetwork, activation_bytes_per_sample, repeat_groups
from robustdice_core.zoo import LabelledImages

__all__ = ["DivergenceScorer", "jensen_shannon"]


def jensen_shannon(p: Tensor, q: Tensor) -> Tensor:
    """JSD(p || q) in nats over the last axis (bounded by ln 2)."""
    m = 0.5 * (p + q)
    kl_pm = torch.special.xlogy(p, p) - torch.special.xlogy(p, m)
    kl_qm = torch.special.xlogy(q, q) - torch.special.xlogy(q, m)
    return 0.5 * (kl_pm + kl_qm).sum(dim=-1)


class DivergenceScorer(ImportanceScorer):
    """Args:
    memory_budget_mb: bounds the activations of one batched forward; more ablations per
        forward are faster until memory bandwidth dominates.
    """

    name = "s3"

    def __init__(self, *, memory_budget_mb: int = 512) -> None:
        self.memory_budget_mb = memory_budget_mb

    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        calibration = require_data(self, calibration)
        images = calibration.images
        with torch.inference_mode():
            reference = torch.softmax(net(images), dim=-1)
            return [self._score_unit(net, i, images, reference) for i in range(len(net.units))]

    def _score_unit(
        self, net: MaskedNetwork, index: int, images: Tensor, reference: Tensor
    ) -> np.ndarray:
        """Mean JSD per neuron; neuron blocks outside, image chunks inside, so one forward
        holds at most ``memory_budget_mb`` of activations even for one ablation."""
        unit = net.units[index]
        prefix, suffix = net.split_after(unit.sync_node)
        live = prefix(images)
        total = images.shape[0]
        chunk = min(total, self._samples_per_forward(suffix))
        per_group = self._ablations_per_forward(suffix, chunk)
        count = unit.num_neurons
        sums = torch.zeros(count, dtype=torch.float64)
        masks: list[Tensor | None] = [None] * len(net.units)
        for start in range(0, count, per_group):
            neurons = torch.arange(start, min(start + per_group, count))
            groups = neurons.numel()
            mask = torch.ones(groups, count, dtype=images.dtype)
            mask[torch.arange(groups), neurons] = 0.0
            masks[index] = mask
            for first in range(0, total, chunk):
                part = slice(first, first + chunk)
                expanded = [repeat_groups(t[part], groups) for t in live]
                with net.masked(masks):
                    probs = torch.softmax(suffix(*expanded), dim=-1)
                divergence = jensen_shannon(reference[part].repeat(groups, 1), probs)
                sums[neurons] += divergence.view(groups, -1).double().sum(dim=1)
        return (sums / total).numpy()

    def _samples_per_forward(self, suffix: fx.GraphModule) -> int:
        per_sample = activation_bytes_per_sample(suffix)
        return max(1, self.memory_budget_mb * 2**20 // per_sample)

    def _ablations_per_forward(self, suffix: fx.GraphModule, batch: int) -> int:
        """Ablations per forward when each covers ``batch`` images."""
        return max(1, self._samples_per_forward(suffix) // batch)
