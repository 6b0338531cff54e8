"""The paper's Table 2 trend, estimated: per-device weight memory of LOP, CDC, full
replication and RobustDiCE at several thresholds, for torchvision models on ND devices.

Run ``python -m robustdice_core.costs._table2`` to print the table in ``docs/cost_model.md``.
Weights are random (``weights=None``): the memory figures depend only on the architecture and
the partition, and s1 scores of random weights are enough to exercise the clustering.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
import torchvision

from robustdice_core.costs._estimate import CostEstimate, estimate_costs
from robustdice_core.costs._model_info import ModelCostInfo
from robustdice_core.costs._profiles import load_device_profile, load_link_profile
from robustdice_core.importance import ImportanceScores, MagnitudeScorer
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CDC, LOP, FullReplication, Partition, RobustDiCE
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LabelledImages

__all__ = ["table2_trend", "trend_rows", "format_table"]

MODELS = ("alexnet", "vgg16_bn", "convnext_tiny")
THRESHOLDS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.4)


def table2_trend(
    models: Sequence[str] = MODELS,
    thresholds: Sequence[float] = THRESHOLDS,
    *,
    num_devices: int = 4,
    dtype: str = "fp32",
    device: str = "jetson_xavier_nx_15w",
    link: str = "gigabit_ethernet",
) -> list[dict[str, Any]]:
    """Rows of the Table-2 trend for torchvision ``models`` (random weights, 224 x 224)."""
    rows: list[dict[str, Any]] = []
    for name in models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None)
        traced = trace_model(model, (3, 224, 224))
        rows += trend_rows(
            name,
            traced,
            thresholds,
            num_devices=num_devices,
            dtype=dtype,
            device=device,
            link=link,
        )
    return rows


def trend_rows(
    name: str,
    traced: TracedModel,
    thresholds: Sequence[float],
    *,
    num_devices: int = 4,
    dtype: str = "fp32",
    device: str = "jetson_xavier_nx_15w",
    link: str = "gigabit_ethernet",
) -> list[dict[str, Any]]:
    """The trend rows of one traced model: baselines, then RobustDiCE per threshold."""
    info = ModelCostInfo.from_traced(traced)
    sizes = [int(n) for n in info.num_neurons]
    partitions: list[tuple[str, Partition]] = [
        ("LOP", LOP().partition(sizes, num_devices)),
        ("CDC", CDC().partition(sizes, num_devices)),
        ("replication", FullReplication().partition(sizes, num_devices)),
    ]
    robust = RobustDiCE(_s1_points(traced))
    for t in thresholds:
        partitions.append((f"RobustDiCE t={t:g}", robust.partition_for(t, num_devices)))
    profile, network = load_device_profile(device), load_link_profile(link)
    estimates = [
        (label, p, estimate_costs(p, info, profile, network, dtype=dtype))
        for label, p in partitions
    ]
    full = estimates[2][2].max_weight_mb
    return [_row(name, label, p, e, full) for label, p, e in estimates]


def _s1_points(traced: TracedModel) -> list[Any]:
    """Normalised s1 (weight magnitude) points per unit; s1 ignores the calibration images."""
    net = MaskedNetwork(traced)
    dummy = LabelledImages(
        torch.zeros((1, *traced.example_shape)), torch.zeros(1, dtype=torch.long)
    )
    raw = MagnitudeScorer().score(net, dummy)
    return ImportanceScores({"s1": tuple(raw)}).points(["s1"])


def _row(
    model: str, label: str, partition: Partition, estimate: CostEstimate, full_mb: float
) -> dict[str, Any]:
    return {
        "model": model,
        "method": label,
        "replication_factor": partition.replication_factor,
        "max_weight_mb": estimate.max_weight_mb,
        "vs_replication": estimate.max_weight_mb / full_mb,
        "fps": estimate.fps,
        "max_energy_j": estimate.max_energy_j,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (numbers to 4 significant digits)."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table for the models named on the command line (default: the paper's)."""
    names = list(argv if argv is not None else sys.argv[1:]) or list(MODELS)
    print(format_table(table2_trend(names)))


if __name__ == "__main__":
    main()
