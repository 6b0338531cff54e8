"""Smoke run of `benchmarks.bench_runtime --quick`: every part runs and its checks hold."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_runtime_benchmark_runs_every_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # `benchmarks` is a folder, not an installed package
    bench = importlib.import_module("benchmarks.bench_runtime")
    common = importlib.import_module("benchmarks._common")
    result = bench.run(quick=True)
    rows = {part: [r for r in result.rows if r["part"] == part]
            for part in ("fps", "bytes", "detection", "soak")}  # fmt: skip
    assert all(rows.values()), {k: len(v) for k, v in rows.items()}
    assert all(r["lost"] == 0 and r["fps"] > 0 and r["ratio"] > 0 for r in rows["fps"])
    # the activation payload on the wire is the cost model's estimate, device by device
    assert all(r["data_devices_match"] for r in rows["bytes"])
    for r in rows["detection"]:
        assert r["undetected"] == 0 and r["min_s"] > 0
    soak = rows["soak"][0]
    assert soak["lost"] == 0 and soak["mixed_up"] == [] and soak["nearest_other_steady"] == []
    injected, planned = soak["faults_injected"], soak["faults_planned"]
    assert injected.get("fail", 0) + injected.get("freeze", 0) >= 1  # the rest may not fit
    assert all(injected[kind] <= planned[kind] for kind in injected)
    assert soak["tail_top1_pct"] == soak["no_failure_top1_pct"]
    assert soak["steady"] + soak["transition"] == soak["images"]
    path = common.write_result(result, tmp_path)
    assert path.name == "runtime.quick.json" and json.loads(path.read_text())["summary"]
    assert "Soak" in bench.markdown(result)
    common.console.print(bench.table(result))
