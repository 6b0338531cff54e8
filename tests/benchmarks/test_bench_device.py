"""Smoke run of `benchmarks.bench_device --quick` on the CPU: every part runs and its figures
are positive and finite."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_quick_device_benchmark_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # `benchmarks` is a folder, not an installed package
    bench = importlib.import_module("benchmarks.bench_device")
    common = importlib.import_module("benchmarks._common")
    plan = bench.make_plan(device="cpu", quick=True)
    assert plan.models == ("alexnet",) and plan.device == "cpu" and plan.images == 8
    result = bench.run(plan)
    assert result.name == "device" and result.settings["quick"] is True
    assert result.settings["device_info"]["name"]  # the CPU's model name
    assert result.settings["trial"]["failure_sets"] == [[], [0], [1], [2], [3]]
    (row,) = result.rows
    assert row["model"] == "alexnet" and row["images"] == 8
    assert row["failure_sets_per_trial"] == 5 and row["configs_computed_per_trial"] == 4
    for key in (
        "plain_fps",
        "masked_fps_per_set",
        "ratio_masked_over_plain",
        "ratio_per_computed_config",
        "trial_s_1000_images",
    ):
        assert _positive(row[key]), (key, row[key])
    assert row["trial_s_1000_images"] == pytest.approx(5 * 1000 / row["masked_fps_per_set"])
    assert row["peak_cuda_mb_masked"] is None  # CPU: no CUDA memory to report
    s3 = row["s3"]
    assert s3["units_sampled"] == 2 and s3["units_total"] == len(s3["units"]) == row["units"]
    assert s3["budget_mb"] == 128
    for key in ("ablations_per_s", "ablation_flops_per_s", "full_score_s_estimate", "wall_s"):
        assert _positive(s3[key]), (key, s3[key])
    assert all(_positive(u["full_s_estimate"]) for u in s3["units"] if u["sampled"])
    summary = result.summary["alexnet"]
    assert summary["ratio_masked_over_plain"] == row["ratio_masked_over_plain"]
    path = common.write_result(result, tmp_path)
    assert path.name == "device.quick.json" and json.loads(path.read_text())["rows"]
    common.console.print(bench.table(result))


def test_device_option_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    bench = importlib.import_module("benchmarks.bench_device")
    errors = importlib.import_module("robustdice_core._errors")
    with pytest.raises(errors.InvalidParameterError):
        bench.make_plan(device="tpu")
    args = bench.parser().parse_args(["--device", "cpu", "--models", "vgg16_bn", "--images", "4"])
    plan = bench.plan_from_args(args)
    assert plan.models == ("vgg16_bn",) and plan.images == 4 and plan.s3_units == 4
    assert bench.spaced_units(16, 4) == [0, 5, 10, 15] and bench.spaced_units(3, 999) == [0, 1, 2]
