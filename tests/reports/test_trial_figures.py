"""Per-trial figures: per-device costs, replication per unit, the detail panel's summary."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import pytest

from reports import (
    DETAIL_FIGURES,
    ReportInput,
    device_costs_info,
    pareto_front_info,
    plot_device_costs,
    plot_replication,
    replication_info,
    trial_details,
    trial_summary,
)
from reports._frames import ENERGY_UNITS, FLOP_UNITS, MEMORY_UNITS, pick_unit


def test_device_costs_per_device_in_study_wide_units(data: ReportInput) -> None:
    info = device_costs_info(data, 1)  # mem 0.5: partition 0.5, 0.55, 0.6 MB
    assert info.devices == ("d0", "d1", "d2")
    memory, energy, compute = info.panels
    assert (memory.figure, memory.unit.symbol) == ("partition_mb", "MB")
    assert memory.values == pytest.approx((0.5, 0.55, 0.6))
    # the study's largest energy is 0.005 J: mJ for every trial, so trials compare
    assert energy.unit.symbol == "mJ"
    assert energy.values == pytest.approx((3.0, 2.7, 2.4))
    assert energy.upper == pytest.approx(5.0 * 1.08)
    assert (compute.unit.symbol, compute.values) == ("MFLOP", pytest.approx((2.0, 4.0, 6.0)))
    assert info.runtime_mb == pytest.approx(1024.0)
    assert "costs estimated by the cost model" in info.subtitle


def test_device_costs_say_measured_when_the_record_does(
    make: Callable[..., ReportInput], trials: pd.DataFrame
) -> None:
    trials.loc[trials["trial"] == 2, "provenance"] = "measured"
    data = make(trials=trials)
    assert "costs measured" in device_costs_info(data, 2).subtitle
    assert "costs estimated" in device_costs_info(data, 1).subtitle


@pytest.mark.parametrize(
    ("values", "units", "symbol"),
    [
        ([0.004, 0.002], ENERGY_UNITS, "mJ"),
        ([2.5], ENERGY_UNITS, "J"),
        ([3e-6], ENERGY_UNITS, "µJ"),
        ([0.0], ENERGY_UNITS, "J"),
        ([], FLOP_UNITS, "GFLOP"),
        ([0.5, float("nan")], MEMORY_UNITS, "KB"),
    ],
)
def test_pick_unit(values: list[float], units: tuple, symbol: str) -> None:  # type: ignore[type-arg]
    assert pick_unit(values, units).symbol == symbol


def test_device_costs_plot_has_one_bar_panel_each(data: ReportInput) -> None:
    fig = plot_device_costs(device_costs_info(data, 0))
    assert isinstance(fig, go.Figure)
    assert [type(t) for t in fig.data] == [go.Bar] * 3
    assert list(fig.data[2].y) == pytest.approx([2.0, 4.0, 6.0])
    assert "trial #0" in fig.layout.title.text


def test_replication_per_unit_with_layer_names(data: ReportInput) -> None:
    info = replication_info(data, 1)  # 1 + (1 + u) % 3
    assert info.layers == ("features.0", "features.3", "classifier.1")
    assert info.factors == (2.0, 3.0, 1.0)
    assert (info.devices, info.overall) == (3, 1.5)
    fig = plot_replication(info)
    assert list(fig.data[0].y) == [2.0, 3.0, 1.0]
    assert list(fig.layout.yaxis.ticktext) == ["0", "1 none", "2", "3 full"]


def test_replication_without_a_units_table_names_units(make: Callable[..., ReportInput]) -> None:
    info = replication_info(make(units=pd.DataFrame()), 0)
    assert info.layers == ("unit 0", "unit 1", "unit 2")


def test_summary_lists_values_status_and_the_deploy_command(data: ReportInput) -> None:
    front = pareto_front_info(data)
    summary = trial_summary(data, front, 2)
    assert summary.status == "dominated"
    assert trial_summary(data, front, 3).status == "infeasible"
    assert trial_summary(data, front, 0).status == "on the Pareto front"
    rows = dict(summary.rows)
    assert rows["acc (Top-1 %)"] == "70.00" and rows["mem (max MB/device)"] == "0.8000"
    assert rows["replication factor"] == "2.00×"
    assert rows["thresholds min / median / max"] == "0.200 / 0.300 / 0.400"
    assert summary.deploy_command == (
        "dse deploy tiny --trial 2 --storage runs/studies.log --out bundle-2"
    )


def test_details_hold_every_completed_trial_and_a_patch_per_figure(data: ReportInput) -> None:
    details = trial_details(data, pareto_front_info(data))
    assert set(details) == {"0", "1", "2", "3"}  # trial 4 failed: nothing to show
    assert details["3"]["values"] == [95.0, 0.2]
    assert set(details["3"]["figures"]) == set(DETAIL_FIGURES)
    devices = details["3"]["figures"]["fig-devices"]
    assert devices["traces"]["0"]["y"] == pytest.approx([0.2, 0.22, 0.24])


@pytest.mark.parametrize("div", sorted(DETAIL_FIGURES))
def test_each_figure_is_its_first_trial_patched(data: ReportInput, div: str) -> None:
    """Patching trial 0's figure with trial 2's patch draws trial 2's figure."""
    figure = DETAIL_FIGURES[div]
    patched = figure.plot(data, 0)
    for index, update in figure.patch(data, 2)["traces"].items():
        patched.data[int(index)].update(update)
    patched.update_layout(figure.patch(data, 2)["layout"])
    assert patched.to_json() == figure.plot(data, 2).to_json()  # NaN != NaN in to_dict
