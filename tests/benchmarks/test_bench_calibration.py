"""`benchmarks.bench_calibration` on synthetic measurement files whose runs a known profile
(with processor time per message) predicts exactly: the joint fit finds it, the fit without
the term cannot, and each trial is held out once across both files."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest

from dse._calibrate import _cost_info
from dse._measure import MEASUREMENTS_FORMAT
from robustdice_core.costs import ProfileValue, estimate_costs, load_device_profile
from robustdice_core.costs import load_link_profile as link_profile
from robustdice_core.partition import Partition

REPO = Path(__file__).resolve().parents[2]
MODEL = "digits-vgg-bn"
MESSAGE_S = 5e-4


def partitions(sizes: list[int]) -> list[Partition]:
    """Two devices; unit u whole on both when bit u of the mask is set, else split."""
    out = []
    for mask in (0, 0b1, 0b101, 0b11110, 0b10101010, 0b11111111, 0b1100110, 0b1011):
        units = [
            (tuple(range(n)), tuple(range(n)))
            if mask >> u & 1
            else (tuple(range(n // 2)), tuple(range(n // 2, n)))
            for u, n in enumerate(sizes)
        ]
        out.append(Partition("hand", 2, tuple(sizes), tuple(units)))
    return out


def write_runs(path: Path, in_flight: int) -> Path:
    info = _cost_info(MODEL)
    base = load_device_profile("this_machine")
    truth = dataclasses.replace(
        base,
        compute_efficiency_fp32=ProfileValue(0.03, "truth", True),
        message_overhead_s=ProfileValue(MESSAGE_S, "truth", True),
    )
    link = link_profile("gigabit_ethernet")
    entries = []
    for i, partition in enumerate(partitions([int(n) for n in info.num_neurons])):
        costs = estimate_costs(
            partition,
            info,
            truth,
            link,
            schedule="overlapped" if in_flight > 1 else "barrier",
            in_flight=in_flight if in_flight > 1 else None,
        )
        measured = {"subject": f"trial:{i}", "fps": costs.fps, "in_flight": in_flight}
        entries.append({"measurement": {**measured, "images": 16, "energy_j": None}})
        entries[-1]["partition"] = partition.to_dict()
    entries[-1]["measurement"]["subject"] = "baseline:cdc"  # the bench holds CDC out
    data = {
        "format": MEASUREMENTS_FORMAT,
        "study": "synthetic",
        "model": MODEL,
        "devices": 2,
        "device_profile": "this_machine",
        "link_profile": "gigabit_ethernet",
        "dtype": "fp32",
        "entries": entries,
    }
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_the_joint_fit_finds_the_processor_time_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # `benchmarks` is a folder, not an installed package
    bench = importlib.import_module("benchmarks.bench_calibration")
    runs = [write_runs(tmp_path / f"k{k}.json", k) for k in (1, 4)]
    result = bench.run(quick=True, runs=runs)
    rows = {(r["fitted_on"], r["predicts"], r["message_term"]): r for r in result.rows}
    assert len(rows) == len(result.rows) == 8
    joint = rows["both", "both", True]
    assert joint["runs_fitted"] == 8 and joint["runs_held_out"] == 8  # 3 trials + CDC, twice
    assert joint["message_overhead_s"] == pytest.approx(MESSAGE_S, rel=1e-3)
    assert joint["held_out_max_pct"] < 0.1
    assert rows["both", "both", False]["held_out_max_pct"] > 1.0  # no delay can stand in
    assert rows["barrier", "overlapped", False]["median_ratio"] > 1.0  # over-predicts
    assert result.summary["target_met"]
    assert result.summary["joint_held_out_median_pct_with_term"] < 0.1
