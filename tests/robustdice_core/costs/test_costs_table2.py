"""The Table-2 trend: LOP about 1/ND of full replication, RobustDiCE in between, falling."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from robustdice_core.costs._table2 import format_table, table2_trend, trend_rows
from robustdice_core.units import trace_model

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.4)


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def _check_trend(rows: list[dict[str, Any]], num_devices: int) -> None:
    by_method = {row["method"]: row for row in rows}
    full = by_method["replication"]["max_weight_mb"]
    lop = by_method["LOP"]["max_weight_mb"]
    assert lop == pytest.approx(full / num_devices, rel=0.06)
    assert lop < by_method["CDC"]["max_weight_mb"] < full
    robust = [by_method[f"RobustDiCE t={t:g}"]["max_weight_mb"] for t in THRESHOLDS]
    assert robust[0] == full  # t = 0: every neuron its own cluster -> on every device
    assert all(lop <= r <= full for r in robust)
    assert all(a >= b for a, b in zip(robust, robust[1:], strict=False))
    assert robust[-1] < full


def test_trend_on_a_small_cnn() -> None:
    rows = trend_rows("small", trace_model(_small_cnn(), (3, 16, 16)), THRESHOLDS)
    _check_trend(rows, 4)
    table = format_table(rows)
    assert table.startswith("| model | method |") and "RobustDiCE t=0.4" in table


@pytest.mark.slow
def test_trend_on_alexnet() -> None:
    _check_trend(table2_trend(["alexnet"], THRESHOLDS), 4)
