"""Top-1 under k failed devices (Fig. 4): worst / mean / best per k from top1_pct columns."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import pytest

from reports import (
    ReportInput,
    failure_accuracy_info,
    failure_series,
    failure_size,
    plot_failure_accuracy,
)
from reports._failures import failure_accuracy_patch


@pytest.mark.parametrize(
    ("label", "k"),
    [("no failure", 0), ("failed 0", 1), ("failed 3", 1), ("failed 1+3", 2), ("failed 0+1+2", 3)],
)
def test_failure_size_counts_devices_not_ids(label: str, k: int) -> None:
    assert failure_size(label) == k


def test_failure_size_refuses_other_labels() -> None:
    with pytest.raises(ValueError, match="failure set label"):
        failure_size("2 failed")


def test_series_groups_failure_sets_by_size() -> None:
    row = pd.Series(
        {
            "top1_pct[no failure]": 96.0,
            "top1_pct[failed 0]": 90.0,
            "top1_pct[failed 1]": 80.0,
            "top1_pct[failed 2]": 85.0,
            "top1_pct[failed 0+1]": 50.0,
            "top1_pct[failed 1+2]": 70.0,
            "acc": 80.0,  # not a failure set
        }
    )
    series = failure_series(row, (0, 1, 2, 3), "x")
    assert series.worst[:3] == (96.0, 80.0, 50.0)
    assert series.mean[:3] == (96.0, 85.0, 60.0)
    assert series.best[:3] == (96.0, 90.0, 70.0)
    assert series.sets == (1, 3, 2, 0)
    assert math.isnan(series.mean[3])  # k = 3 not evaluated


def test_info_puts_the_trial_first_then_the_baselines(data: ReportInput) -> None:
    info = failure_accuracy_info(data, 1)
    assert info.sizes == (0, 1, 2)
    assert [s.label for s in info.series] == ["trial #1", "LOP", "Full replication"]
    trial = info.series[0]  # failed 0/1/2: 80, 86, 95
    assert trial.worst[:2] == (96.0, 80.0) and math.isnan(trial.worst[2])
    assert trial.mean[1] == pytest.approx((80 + 86 + 95) / 3)
    assert (trial.worst[1], trial.best[1]) == (80.0, 95.0)
    assert info.no_failure == 96.0
    assert info.not_evaluated == (2,)
    assert "k = 2 not evaluated" in info.subtitle
    lop = info.series[1]
    assert (lop.method, lop.worst[1], lop.best[1]) == ("lop", 40.0, 60.0)


def test_all_sizes_evaluated_says_nothing_missing(
    make: Callable[..., ReportInput], trials: pd.DataFrame
) -> None:
    trials["top1_pct[failed 0+1]"] = 33.0
    info = failure_accuracy_info(make(trials=trials), 0)
    assert info.not_evaluated == () and "not evaluated" not in info.subtitle


def test_plot_draws_means_with_whiskers_to_worst_and_best(data: ReportInput) -> None:
    info = failure_accuracy_info(data, 1)
    fig = plot_failure_accuracy(info)
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [b.name for b in bars] == ["trial #1", "LOP", "Full replication"]
    trial = bars[0]
    assert trial.y[1] == pytest.approx(87.0)
    assert trial.error_y.arrayminus[1] == pytest.approx(7.0)  # mean - worst
    assert trial.error_y.array[1] == pytest.approx(8.0)  # best - mean
    line = fig.data[-1]
    assert isinstance(line, go.Scatter) and set(line.y) == {96.0}
    assert "trial #1" in fig.layout.title.text
    assert any(a.text == "not evaluated" for a in fig.layout.annotations)


def test_patch_changes_only_the_trial_line_and_title(data: ReportInput) -> None:
    update = failure_accuracy_patch(failure_accuracy_info(data, 0))
    assert set(update["traces"]) == {"0", "3"}  # the trial's bars and its no-failure line
    assert update["traces"]["0"]["name"] == "trial #0"
    assert update["traces"]["3"]["y"] == [96.0, 96.0, 96.0]
