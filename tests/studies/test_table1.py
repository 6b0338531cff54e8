"""Table 1 (score ablation at equal replication): a tiny run, and the seed aggregation and
findings on known tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from studies import AblationSpec, Verdict, aggregate_seeds, run_study
from studies._table1 import table1_findings


def test_tiny_run_writes_the_table_page_and_record(
    tiny_table1: AblationSpec, tmp_path: Path
) -> None:
    outcome = run_study(tiny_table1, out=tmp_path, jobs=1)
    names = sorted(p.name for p in outcome.files)
    assert names == ["table1.csv", "table1.html", "table1.json", "table1_runs.csv"]
    table = pd.read_csv(tmp_path / "table1.csv")
    # RobustDiCE and budgeted on every subset, the two controls on s1+s2+s3 only
    assert len(table) == 3 * 2 + 2
    controls = table[table["method"].isin(["random-clustering", "random-copies"])]
    assert set(controls["scores"]) == {"s1+s2+s3"}
    # equal replication: every method within a few copies of the target
    assert table["replication_factor"].between(1.2, 1.3).all()
    assert (table["top1_worst_pct"] <= table["top1_mean_pct"] + 1e-9).all()
    assert (table["top1_mean_pct"] <= table["top1_no_failure_pct"] + 1e-9).all()
    # the paper's VGG16-BN numbers beside RobustDiCE's rows only
    robust = table[table["method"] == "robustdice"].set_index("scores")
    assert robust.loc["s1+s3", "paper_top1_pct"] == pytest.approx(71.736)
    assert table[table["method"] != "robustdice"]["paper_top1_pct"].isna().all()
    assert table["seeds"].eq(1).all() and table["top1_worst_std"].isna().all()
    page = (tmp_path / "table1.html").read_text()
    assert "Plotly" in page and "<script src=" not in page  # plotly.js inlined: offline
    assert "digits-vgg-bn: weights trained:digits (cached)" in page
    assert "failure simulation" in page and "60 test images" in page
    assert outcome.data.findings


def _details(values: dict[tuple[str, int], float]) -> pd.DataFrame:
    rows = [
        {
            "model": "m",
            "seed": seed,
            "replication_target": 1.25,
            "scores": scores,
            "method": "robustdice",
            "label": "RobustDiCE",
            "replication_factor": 1.25,
            "top1_no_failure_pct": 99.0,
            "top1_worst_pct": value,
            "top1_mean_pct": value + 1,
        }
        for (scores, seed), value in values.items()
    ]
    return pd.DataFrame(rows)


def test_aggregate_seeds_mean_std_range() -> None:
    details = _details({("s1", 0): 80.0, ("s1", 1): 90.0, ("s1", 2): 85.0, ("s2", 0): 70.0})
    table = aggregate_seeds(details).set_index("scores")
    assert table.loc["s1", "seeds"] == 3
    assert table.loc["s1", "top1_worst_pct"] == pytest.approx(85.0)
    assert table.loc["s1", "top1_worst_std"] == pytest.approx(5.0)  # sample std (n - 1)
    assert (table.loc["s1", "top1_worst_min"], table.loc["s1", "top1_worst_max"]) == (80, 90)
    assert table.loc["s1", "top1_mean_pct"] == pytest.approx(86.0)
    assert math.isnan(table.loc["s2", "top1_worst_std"])  # one seed: no spread


def test_findings_on_a_known_table() -> None:
    spec = AblationSpec(name="t", paper="T", title="t")
    details = _details(
        {
            ("s1", 0): 50.0,
            ("s1", 1): 60.0,
            ("s1+s2", 0): 70.0,
            ("s1+s2", 1): 50.0,
            ("s1+s2+s3", 0): 65.0,
            ("s1+s2+s3", 1): 66.0,
        }
    )
    best, seeds, pairs = table1_findings(details, spec)
    assert best.verdict is Verdict.CONFIRMED  # 65.5 > 60 = 55
    assert "rank 1 of 3 in the worst case (65.5 %" in best.ours
    assert seeds.verdict is Verdict.OURS_ONLY
    assert "seed 0: s1+s2, seed 1: s1+s2+s3" in seeds.ours
    assert pairs.verdict is Verdict.CONFIRMED and "+5.0 points" in pairs.ours
    worse = details.assign(
        top1_worst_pct=details["top1_worst_pct"].where(details["scores"] != "s1+s2+s3", 10.0)
    )
    assert table1_findings(worse, spec)[0].verdict is Verdict.NOT_CONFIRMED
    close = details.assign(  # 0.5 below the best other subset: a tie, never "clearly best"
        top1_worst_pct=details["top1_worst_pct"].where(details["scores"] != "s1+s2+s3", 59.5)
    )
    tied = table1_findings(close, spec)[0]
    assert tied.verdict is Verdict.NOT_CONFIRMED and "within the tie margin in 1" in tied.ours
