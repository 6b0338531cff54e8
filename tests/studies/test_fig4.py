"""Fig. 4 (Top-1 under failed devices per device count): a tiny run, and the paper column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studies import FailureSweepSpec, Verdict, run_study
from studies._fig4 import _with_paper
from studies._result import Tally


def test_tiny_run(tiny_fig4: FailureSweepSpec, tmp_path: Path) -> None:
    outcome = run_study(tiny_fig4, out=tmp_path, jobs=1)
    table = pd.read_csv(tmp_path / "fig4.csv")
    # 4 methods x (3 + 2 failure counts) on 3 and 2 devices
    assert len(table) == 4 * (3 + 2)
    assert set(table["devices"]) == {3, 2}
    assert (table["top1_worst_pct"] <= table["top1_mean_pct"] + 1e-9).all()
    assert (table["top1_mean_pct"] <= table["top1_best_pct"] + 1e-9).all()
    replication = table[table["method"] == "replication"]
    assert replication["top1_worst_pct"].nunique() == 1  # every device holds everything
    assert table["paper_top1_pct"].isna().all()  # the paper quotes AlexNet on 4 devices only
    verdicts = {f.claim.split(" ")[0]: f.verdict for f in outcome.data.findings}
    assert verdicts["CDC"] is Verdict.CONFIRMED  # one lost slice is recovered exactly
    page = (tmp_path / "fig4.html").read_text()
    assert "threshold 0.3 for every unit" in page


def test_paper_values_sit_beside_the_alexnet_family_on_four_devices() -> None:
    rows = [
        {"model": model, "devices": 4, "method": method, "failed": k}
        for model in ("digits-alexnet", "alexnet", "digits-vgg-bn")
        for method in ("robustdice", "lop", "cdc", "replication")
        for k in range(4)
    ]
    table = _with_paper(pd.DataFrame(rows)).set_index(["model", "method", "failed"])
    paper = table["paper_top1_pct"]
    assert paper[("digits-alexnet", "robustdice", 2)] == pytest.approx(45.28)
    assert paper[("alexnet", "lop", 3)] == pytest.approx(6.42)
    assert paper[("alexnet", "replication", 2)] == pytest.approx(56.55)  # Optimal
    assert paper[("alexnet", "cdc", 0)] == pytest.approx(56.55)
    assert pd.isna(paper[("alexnet", "cdc", 1)])  # only plotted in the paper
    assert paper.loc["digits-vgg-bn"].isna().all()


def test_tally_counts_differences_within_the_margin_as_ties() -> None:
    tally = Tally.of([50.0, 10.0, 30.0], [40.0, 10.4, 31.5], 1.0)
    assert (tally.wins, tally.ties, tally.losses) == (1, 1, 1)
    assert tally.verdict is Verdict.MIXED
    assert Tally.of([50.0, 10.0], [40.0, 10.5], 1.0).verdict is Verdict.CONFIRMED
    assert Tally.of([10.0], [10.5], 1.0).verdict is Verdict.NOT_CONFIRMED
    assert "within the tie margin in 1" in tally.describe()
