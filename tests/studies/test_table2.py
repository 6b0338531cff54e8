"""Table 2 (estimated per-device costs): the trend on a small CNN (moved here with the script
from robustdice_core.costs), a tiny run on an embedded model, and the claims."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustdice_core.importance import ImportanceScores, MagnitudeScorer
from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LabelledImages
from studies import STUDIES, ResourceSpec, Verdict, cost_configurations, resource_rows, run_study
from studies._table2_claims import table2_findings

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


def _s1_points(traced: TracedModel) -> list[np.ndarray]:
    net = MaskedNetwork(traced)
    dummy = LabelledImages(torch.zeros((1, *traced.example_shape)), torch.zeros(1).long())
    raw = MagnitudeScorer().score(net, dummy)
    return ImportanceScores({"s1": tuple(raw)}).points(["s1"])


def _trend_spec() -> ResourceSpec:
    spec = STUDIES.get("table2-trend")
    assert isinstance(spec, ResourceSpec)
    configurations = [c for c in spec.configurations if c.thresholds in (None, *THRESHOLDS)]
    return ResourceSpec(
        name="trend",
        paper="T",
        title="t",
        configurations=tuple(configurations),
        scores=("s1",),
        dtype="fp32",
        reference="replication",
    )


def test_memory_trend_on_a_small_cnn() -> None:
    """LOP about 1/ND of full replication, CDC between, RobustDiCE between and falling."""
    traced = trace_model(_small_cnn(), (3, 16, 16))
    spec = _trend_spec()
    rows = resource_rows("small", 0, cost_configurations(traced, _s1_points(traced), spec), spec)
    by = {row["configuration"]: row for row in rows}
    full = by["replication"]["estimated_max_weight_mb"]
    lop = by["LOP"]["estimated_max_weight_mb"]
    assert lop == pytest.approx(full / 4, rel=0.06)
    assert lop < by["CDC"]["estimated_max_weight_mb"] < full
    robust = [by[f"RobustDiCE t={t:g}"]["estimated_max_weight_mb"] for t in THRESHOLDS]
    assert robust[0] == full  # t = 0: every neuron alone -> on every device
    assert all(lop <= r <= full for r in robust)
    assert all(a >= b for a, b in zip(robust, robust[1:], strict=False))
    assert robust[-1] < full
    assert by["replication"]["estimated_max_memory_mb_vs_ref"] == 1.0
    assert by["LOP"]["measured_fps"] is None and by["LOP"]["measured_source"] is None


def test_tiny_run_on_an_embedded_model(tiny_table2: ResourceSpec, tmp_path: Path) -> None:
    outcome = run_study(tiny_table2, out=tmp_path, jobs=1)
    table = pd.read_csv(tmp_path / "table2.csv").set_index("configuration")
    assert list(table.index) == [c.label for c in tiny_table2.configurations]
    # full replication costs the same per device on 4, 3 and 2 devices (no exchange)
    qmr, dmr = table.loc["QMR"], table.loc["DMR"]
    assert qmr["estimated_max_memory_mb"] == pytest.approx(dmr["estimated_max_memory_mb"])
    assert table.loc["Robust-SysConf4D", "replication_factor"] > 1.0
    lop = table.loc["LOP-SysConf4D", "estimated_max_weight_mb"]
    assert (
        lop
        < table.loc["Robust-SysConf4D", "estimated_max_weight_mb"]
        < qmr["estimated_max_weight_mb"]
    )
    # measured columns are empty until the runtime's meters exist; the paper is beside ours
    assert table[["measured_fps", "measured_max_energy_j"]].isna().all().all()
    assert table.loc["QMR", "paper_fps"] == pytest.approx(10.744)  # VGG16-BN's row
    assert table.loc["TMR", "paper_fps"] == pytest.approx(10.744)
    assert pd.isna(table.loc["LOP-SysConf4D", "paper_fps"])
    assert table.loc["CDC-SysConf4D", "paper_max_memory_mb_vs_ref"] == pytest.approx(
        272.293 / 429.215
    )
    page = (tmp_path / "table2.html").read_text()
    assert "Estimated by the cost model" in page and "Measured: nothing yet" in page
    assert outcome.data.findings


def _row(model: str, configuration: str, memory: float, energy: float, fps: float) -> Any:
    return {
        "model": model,
        "configuration": configuration,
        "estimated_max_memory_mb": memory,
        "estimated_max_energy_j": energy,
        "estimated_fps": fps,
    }


def test_claims_on_a_known_table() -> None:
    table = pd.DataFrame(
        [
            _row("m", "QMR", 100, 1.0, 10),
            _row("m", "Robust-SysConf4D", 40, 0.8, 12),
            _row("m", "Robust-SysConf2D", 60, 1.2, 9),
        ]
    )
    findings = {f.claim.split(" (")[0]: f for f in table2_findings(table)}
    memory = findings["RobustDiCE needs less memory per device than full replication"]
    assert memory.verdict is Verdict.CONFIRMED and "2 of 2" in memory.ours
    energy = findings["RobustDiCE uses less energy per device than full replication"]
    assert energy.verdict is Verdict.MIXED and "Robust-SysConf2D 1.2 vs QMR 1" in energy.ours
    assert len(findings) == 3  # the CDC claims need CDC rows


def test_the_local_runtime_meter_fills_the_measured_columns(tmp_path: Path) -> None:
    """Two configurations on real local nodes: FPS and peak RSS measured, no energy meter
    here (the cost model's estimate never goes into a measured column)."""
    spec = STUDIES.get("table2-measured")
    assert isinstance(spec, ResourceSpec) and spec.meter == "local-runtime"
    two = tuple(c for c in spec.configurations if c.devices == 2)
    tiny = replace(
        spec, models=("digits-alexnet",), configurations=two, reference=two[0].label,
        test_size=20,
    )  # fmt: skip
    outcome = run_study(tiny, out=tmp_path, jobs=1)
    table = outcome.data.table
    assert (table["measured_fps"] > 0).all() and (table["measured_max_memory_mb"] > 0).all()
    assert table["measured_max_energy_j"].isna().all()
    assert table["measured_source"].str.contains("local runtime: ").all()
