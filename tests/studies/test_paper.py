"""The package's copy of the paper's numbers equals ../shared/paper/*.csv (when present)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from studies import PAPER_TABLE1, PAPER_TABLE2, paper_model
from studies._paper import PAPER_FIG4_ALEXNET, PAPER_OPTIMAL_ALEXNET

PAPER = Path(__file__).resolve().parents[2].parent / "shared" / "paper"


def _rows(name: str) -> list[dict[str, str]]:
    path = PAPER / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (the paper's files sit beside the repository)")
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def test_table1_copy() -> None:
    for row in _rows("table1_importance_ablation.csv"):
        for model in ("alexnet", "vgg16_bn", "convnext_tiny"):
            assert PAPER_TABLE1[model][row["scores"]] == float(row[f"{model}_top1"])


def test_table2_copy() -> None:
    rows = _rows("table2_resources.csv")
    assert len(rows) == sum(len(v) for v in PAPER_TABLE2.values())
    for row in rows:
        paper = PAPER_TABLE2[row["network"]][row["system_configuration"]]
        assert paper.max_energy_j == float(row["max_per_device_energy_j_per_img"])
        assert paper.fps == float(row["system_throughput_fps"])
        assert paper.max_memory_mb == float(row["max_per_device_memory_mb"])


def test_fig4_copy() -> None:
    rows = _rows("fig4_alexnet_sysconf4d.csv")
    for row in rows:
        k = int(row["failed_devices"])
        assert PAPER_FIG4_ALEXNET["robustdice"][k] == float(row["robustdice_top1"])
        assert PAPER_FIG4_ALEXNET["lop"][k] == float(row["lop_top1"])
    assert "56.55" in (PAPER / "fig4_alexnet_sysconf4d.csv").read_text()
    assert PAPER_OPTIMAL_ALEXNET == 56.55


def test_paper_counterparts() -> None:
    assert paper_model("digits-vgg-bn@seed2") == "vgg16_bn"
    assert paper_model("convnext_tiny") == "convnext_tiny"
    assert paper_model("resnet18") is None
