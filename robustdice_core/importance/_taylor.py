"""s2: connection sensitivity, sum over a neuron's weights and bias of |dL/dw * w| (line 8)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from robustdice_core._device import exact_float32, module_device
from robustdice_core.importance._base import ImportanceScorer, layer_of, require_data
from robustdice_core.masking import MaskedNetwork
from robustdice_core.zoo import LabelledImages

__all__ = ["TaylorScorer"]


class TaylorScorer(ImportanceScorer):
    """L is the cross-entropy of the whole calibration set (mean), against its labels, or
    against the model's own top-1 prediction when ``use_labels`` is False. Runs on the
    network's device, ``batch_size`` images per forward and backward."""

    name = "s2"

    def __init__(self, *, batch_size: int = 64, use_labels: bool = True) -> None:
        self.batch_size = batch_size
        self.use_labels = use_labels

    def settings(self) -> dict[str, object]:
        return {"use_labels": self.use_labels}

    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        calibration = require_data(self, calibration)
        layers = [layer_of(net, u.name) for u in net.units]
        params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
        grads = [torch.zeros_like(p) for p in params]
        total = len(calibration)
        device = module_device(net)
        with exact_float32():
            for start in range(0, total, self.batch_size):
                part = slice(start, start + self.batch_size)
                logits = net(calibration.images[part].to(device))
                if self.use_labels:
                    target = calibration.labels[part].to(device)
                else:
                    target = logits.detach().argmax(dim=1)
                loss = F.cross_entropy(logits, target, reduction="sum") / total
                for acc, grad in zip(grads, torch.autograd.grad(loss, params), strict=True):
                    acc += grad
        by_param = dict(zip((id(p) for p in params), grads, strict=True))
        scores = []
        with torch.no_grad():
            for layer in layers:
                value = (by_param[id(layer.weight)] * layer.weight).abs().flatten(1).sum(dim=1)
                if layer.bias is not None:
                    value = value + (by_param[id(layer.bias)] * layer.bias).abs()
                scores.append(value.double().cpu().numpy())
        return scores
