"""Fig. 3 on the runtime: the spec on a tiny budget (real nodes), its checks, and its page."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from robustdice_core import RobustDiceError
from studies import STUDIES, StudyOutcome, TimeoutSpec, Verdict, run_study, study_status
from studies._fig3 import PAPER_FIG3_MS, fig3_findings, points_of

MODEL = "digits-vgg-bn"  # the tests' session model (tests/studies/conftest.py)


@pytest.fixture(scope="module")
def tiny_fig3(tmp_path_factory: pytest.TempPathFactory) -> StudyOutcome:
    spec = STUDIES.get("fig3")
    assert isinstance(spec, TimeoutSpec)
    tiny = replace(
        spec, models=(MODEL,), images=10, timeouts_us=(100, 30000), calibration_size=32,
        test_size=60,
    )  # fmt: skip
    return run_study(tiny, out=tmp_path_factory.mktemp("fig3"), jobs=1)


def test_fig3_is_declared_with_the_papers_range() -> None:
    spec = STUDIES.get("fig3")
    assert isinstance(spec, TimeoutSpec)
    assert spec.timeouts_us[0] == 10 and spec.timeouts_us[-1] == 30000  # the paper's range
    assert 500 in spec.timeouts_us and spec.devices == 4 and spec.models == ("digits-vgg-bn",)
    assert study_status(spec) is None


def test_every_paper_study_is_ready() -> None:
    ready = [name for name in STUDIES.names() if study_status(STUDIES.get(name)) is None]
    assert ready == ["fig3", "fig4", "table1", "table2", "table2-measured", "table2-trend"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fail_rank": 4}, "`fail_rank` must be in 0..3"),
        ({"fail_at": 120}, "`fail_at` must be an image before `images` \\(120\\)"),
        ({"timeouts_us": (5, 100)}, "`timeouts_us` must lie in 10..1e6 us"),
        ({"in_flight": 0}, "`in_flight` must be at least 1"),
        ({"scores": ("s9",)}, "s9"),
    ],
)
def test_spec_refuses_bad_settings(change: dict[str, object], message: str) -> None:
    with pytest.raises(RobustDiceError, match=message):
        replace(STUDIES.get("fig3"), **change)


@pytest.mark.slow
def test_tiny_fig3_on_real_nodes(tiny_fig3: StudyOutcome) -> None:
    table = tiny_fig3.data.table
    assert list(table["scenario"]) == ["no failure", "1 failed", "1 failed"]
    assert list(table["timeout_us"][1:]) == [100, 30000]
    assert (table["model"] == MODEL).all() and (table["devices"] == 4).all()
    assert (table["fail_at"] == 5).all() and (table["images"] == 5).all()  # half way
    assert (table["answered"] + table["lost"] == table["images"]).all()
    # the paper's one number sits beside ours at 30 ms, nowhere else
    paper = table["paper_latency_ms"]
    assert paper.iloc[2] == PAPER_FIG3_MS[30000.0] and paper.iloc[:2].isna().all()
    assert {f.verdict for f in tiny_fig3.data.findings[3:]} == {Verdict.OURS_ONLY}
    assert len(tiny_fig3.data.findings) == 5
    names = sorted(p.name for p in tiny_fig3.files)
    assert names == ["fig3.csv", "fig3.html", "fig3.json"]
    folder = tiny_fig3.files[0].parent
    page = (folder / "fig3.html").read_text()
    assert "171.72" in page and "plain loopback" in page and '"type":"log"' in page
    meta = json.loads((folder / "fig3.json").read_text())
    assert meta["study"] == "fig3" and meta["spec"]["timeouts_us"] == [100, 30000]
    csv = pd.read_csv(folder / "fig3.csv")
    assert list(csv["scenario"]) == list(table["scenario"])


@pytest.mark.slow
def test_points_come_back_from_the_table(tiny_fig3: StudyOutcome) -> None:
    baseline, points = points_of(tiny_fig3.data.table)
    assert baseline.failed is None and baseline.detection_s is None
    assert [p.failed for p in points] == [1, 1]
    assert [p.timeout_s for p in points] == [1e-4, 3e-2]


def _row(model: str, timeout_us: float, mean: float, top1: float, **extra: float) -> dict:
    failed = math.nan if timeout_us == 0 else 1.0
    return {
        "model": model, "seed": 0, "failed": failed, "timeout_us": timeout_us,
        "latency_mean_ms": mean, "latency_p50_ms": mean, "latency_max_ms": mean,
        "top1_pct": top1, "matching_simulation": 0, "answered": 10,
        "simulated_top1_pct": 80.0, "false_downs": extra.get("false_downs", 0),
        "lost": 0, "steady_p50_ms": mean, "transient_max_ms": mean,
    }  # fmt: skip


def test_findings_on_known_tables() -> None:
    """The paper's shape (faster and less accurate when small, slower when large) confirmed;
    a flat curve not."""
    paper_like = pd.DataFrame(
        [
            _row("m", 0, 100.0, 80.0),
            _row("m", 10, 60.0, 20.0, false_downs=50),
            _row("m", 500, 80.0, 60.0, false_downs=5),
            _row("m", 30000, 171.0, 80.0),
        ]
    )
    small_fast, small_worse, large_slow, *_ = fig3_findings(paper_like)
    assert small_fast.verdict is Verdict.CONFIRMED and small_worse.verdict is Verdict.CONFIRMED
    assert large_slow.verdict is Verdict.CONFIRMED and "171.0 ms mean" in large_slow.ours
    flat = pd.DataFrame(
        [
            _row("m", 0, 100.0, 80.0),
            _row("m", 10, 120.0, 80.0),
            _row("m", 500, 100.0, 79.5),
            _row("m", 30000, 90.0, 80.0),
        ]
    )
    small_fast, small_worse, large_slow, steady, false = fig3_findings(flat)
    assert {small_fast.verdict, small_worse.verdict, large_slow.verdict} == {Verdict.NOT_CONFIRMED}
    assert "none at 10, 500, 30000 us" in false.ours
