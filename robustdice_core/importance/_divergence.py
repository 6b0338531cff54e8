"""s3: Jensen-Shannon divergence between the softmax output with and without a neuron.

The neuron is zeroed at its unit's sync point (DESIGN 3.2). Per unit, the activations just
after the sync point are computed once for the calibration set; then many single-neuron
ablations are evaluated per forward of the rest of the network, as sample groups with one
mask each.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor

from robustdice_core.importance._base import ImportanceScorer, require_data
from robustdice_core.masking import MaskedNetwork, repeat_groups
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
        unit = net.units[index]
        prefix, suffix = net.split_after(unit.sync_node)
        live = prefix(images)
        per_group = self._ablations_per_forward(suffix, images.shape[0])
        count = unit.num_neurons
        scores = torch.empty(count, dtype=torch.float64)
        masks: list[Tensor | None] = [None] * len(net.units)
        for start in range(0, count, per_group):
            neurons = torch.arange(start, min(start + per_group, count))
            groups = neurons.numel()
            mask = torch.ones(groups, count, dtype=images.dtype)
            mask[torch.arange(groups), neurons] = 0.0
            masks[index] = mask
            expanded = [repeat_groups(t, groups) for t in live]
            with net.masked(masks):
                probs = torch.softmax(suffix(*expanded), dim=-1)
            divergence = jensen_shannon(reference.repeat(groups, 1), probs)
            scores[neurons] = divergence.view(groups, -1).double().mean(dim=1)
        return scores.numpy()

    def _ablations_per_forward(self, suffix: fx.GraphModule, batch: int) -> int:
        largest = max(
            (
                math.prod(n.meta["tensor_meta"].shape[1:])
                for n in suffix.graph.nodes
                if _has_shape(n)
            ),
            default=1,
        )
        per_ablation = 3 * 4 * largest * batch  # ~3 float32 tensors of that size alive at once
        return max(1, int(self.memory_budget_mb * 2**20 // per_ablation))


def _has_shape(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")
