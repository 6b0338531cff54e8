"""`ModelCostInfo`: per-unit figures, channel-mixing work and the activation working set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustdice_core.costs import ModelCostInfo, estimate_costs
from robustdice_core.partition import LOP, FullReplication
from robustdice_core.units import trace_model

from .cost_cases import Residual, make_device, make_link, mixing_model, two_unit_model


def _model_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for b in model.buffers() if b.dim() >= 1
    )


def test_per_unit_figures(tiny_info: ModelCostInfo) -> None:
    assert tiny_info.num_neurons.tolist() == [4, 2]
    assert tiny_info.params_per_neuron.tolist() == [14, 17]
    assert tiny_info.macs_per_neuron.tolist() == [144, 16]
    assert tiny_info.local_flops_per_neuron.tolist() == [64.0, 0.0]  # BN 32, ReLU 16, pool 16
    assert tiny_info.sync_elements_per_neuron.tolist() == [4, 1]
    assert tiny_info.linear_elements_per_neuron.tolist() == [16, 1]
    assert tiny_info.input_elements.tolist() == [16, 16]
    assert tiny_info.mixing_params == 0
    assert tiny_info.mixing_flops.tolist() == [0.0, 0.0, 0.0]  # flatten is a view


def test_totals_match_the_model() -> None:
    model = two_unit_model()
    info = ModelCostInfo.from_traced(trace_model(model, (1, 4, 4)))
    assert info.total_params == _model_params(model)
    assert info.total_flops == 4 * (2 * 144 + 64) + 2 * 2 * 16


def test_channel_mixing_layers_are_redundant_work() -> None:
    model = mixing_model()
    info = ModelCostInfo.from_traced(trace_model(model, (1, 2, 2)))
    assert info.mixing_params == 16  # LayerNorm(8) weight and bias, held by every device
    assert info.total_params == _model_params(model)
    # LayerNorm with affine: 8 FLOPs per element of its 8-element output, before unit 1
    assert info.mixing_flops.tolist() == [0.0, 64.0, 0.0]
    assert info.mixing_traffic_elements.tolist() == [0.0, 16.0, 0.0]


def test_mixing_work_runs_on_every_device() -> None:
    info = ModelCostInfo.from_traced(trace_model(mixing_model(), (1, 2, 2)))
    costs = estimate_costs(LOP().partition([2, 3], 2), info, make_device(), make_link())
    # device 0: 1 conv neuron * 4 MACs * 2 + 2 linear neurons * 8 MACs * 2 + LayerNorm 64;
    # weights: conv 1 * (1 + 1), linear 2 * (8 + 1), LayerNorm 16
    assert costs.per_device[0].flops == 2 * 4 + 2 * 2 * 8 + 64
    assert costs.per_device[0].weight_bytes == (2 + 2 * 9 + 16) * 4


def test_residual_keeps_the_skip_tensor_live() -> None:
    torch.manual_seed(0)
    model = Residual()
    info = ModelCostInfo.from_traced(trace_model(model, (2, 2, 2)))
    # x (8) is read by the final add, so it is live next to conv2's input and output: 3 * 8
    assert info.activation_elements(np.ones((2, 1))).tolist() == [24.0]
    # the add after the last sync point is the tail stage
    assert info.mixing_flops.tolist() == [0.0, 0.0, 8.0]
    full = FullReplication().partition([2, 2], 2)
    costs = estimate_costs(full, info, make_device(), make_link())
    unit_flops = 2 * (2 * 2 * 4 + 4) + 2 * 2 * 2 * 4  # conv1 + relu, conv2
    assert costs.latency_s == pytest.approx((unit_flops + 8) / 1000)


def test_partial_tensors_scale_with_the_share_of_neurons(tiny_info: ModelCostInfo) -> None:
    # steps: x 16 | conv 16 + 64f | bn 128f | relu 128f | pool 64f + 16 | linear 18
    assert tiny_info.act_full.tolist() == [16.0, 16.0, 0.0, 0.0, 16.0, 18.0]
    assert tiny_info.act_partial[:, 0].tolist() == [0.0, 64.0, 128.0, 128.0, 64.0, 0.0]
    fractions = np.array([[0.25, 1.0], [1.0, 1.0]])
    assert tiny_info.activation_elements(fractions).tolist() == [32.0, 128.0]


def test_inplace_activation_allocates_nothing() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4, 2))
    info = ModelCostInfo.from_traced(trace_model(model, (1, 1, 1)))
    # x 1 | conv 4 (relu and flatten alias it) | sync copy 4 | linear 4 + 2
    assert info.activation_elements(np.ones((2, 1))).tolist() == [8.0]
