"""Tiny models with hand-computable costs, and round-number profiles for the formulas."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustdice_core.costs import DeviceProfile, LinkProfile, Medium, ProfileValue


def pv(value: float) -> ProfileValue:
    return ProfileValue(float(value), "test", False)


def make_device(**overrides: float) -> DeviceProfile:
    """1000 FLOP/s, effectively infinite memory bandwidth, no overheads: compute-bound."""
    values = {
        "memory_bytes": 10_000.0,
        "peak_flops_fp32": 1000.0,
        "peak_flops_fp16": 2000.0,
        "compute_efficiency_fp32": 1.0,
        "compute_efficiency_fp16": 1.0,
        "memory_bandwidth_bytes_per_s": 1e12,
        "bandwidth_efficiency": 1.0,
        "unit_overhead_s": 0.0,
        "runtime_overhead_bytes": 1000.0,
        "idle_power_w": 2.0,
        "energy_per_flop_fp32_j": 1e-3,
        "energy_per_flop_fp16_j": 5e-4,
    }
    values.update(overrides)
    numbers: dict[str, Any] = {k: pv(v) for k, v in values.items()}
    return DeviceProfile(name="test_device", description="", **numbers)


def make_link(medium: Medium = Medium.SWITCHED, **overrides: float) -> LinkProfile:
    """100 B/s, 10 ms per message, 10 mJ/B sent, 20 mJ/B received."""
    values = {
        "bandwidth_bytes_per_s": 100.0,
        "latency_s": 0.01,
        "tx_energy_j_per_byte": 0.01,
        "rx_energy_j_per_byte": 0.02,
    }
    values.update(overrides)
    numbers: dict[str, Any] = {k: pv(v) for k, v in values.items()}
    return LinkProfile(name="test_link", description="", medium=medium, **numbers)


def two_unit_model() -> nn.Module:
    """Conv(1->4, 3x3, pad 1) + BN + ReLU + MaxPool(2) | Flatten | Linear(16 -> 2), on 1x4x4.

    Unit 0: 4 neurons, 9 + 1 + 4 (BN) = 14 params, 9 * 16 = 144 MACs, sync 4 elements,
    pre-activation 16 elements, local ops per neuron: BN 2*16 + ReLU 16 + pool 16 = 64 FLOPs.
    Unit 1: 2 neurons, 16 + 1 = 17 params, 16 MACs, 1 element each.
    """
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


class Residual(nn.Module):
    """x -> conv1 -> relu -> conv2 -> + x, on 2x2x2: the skip tensor stays live throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1)
        self.conv2 = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


def mixing_model() -> nn.Module:
    """Conv(1->2, 1x1) | Flatten | LayerNorm(8) | Linear(8 -> 3), on 1x2x2."""
    return nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 3))
