"""Pareto front info: which trials are on the front, dominated or infeasible; its plots."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from reports import (
    ObjectiveMeta,
    ReportInput,
    non_dominated,
    pareto_front_info,
    plot_pareto_front,
    plot_scatter_matrix,
)


def test_front_dominated_and_infeasible_are_known(data: ReportInput) -> None:
    info = pareto_front_info(data)
    assert info.front.trials == (0, 1)
    assert info.dominated.trials == (2,)  # (70, 0.8) is worse than trial 1 in both
    # trial 3 would dominate everything, but breaks a constraint: never on the front
    assert info.infeasible.trials == (3,)
    assert 4 not in info.front.trials + info.dominated.trials + info.infeasible.trials  # failed
    assert info.front.values == ((90.0, 1.0), (80.0, 0.5))
    assert info.point_of(2) == (70.0, 0.8) and info.point_of(4) is None


def test_selected_defaults_to_the_default_pick(data: ReportInput) -> None:
    assert pareto_front_info(data).selected == 1
    assert pareto_front_info(data, selected=2).selected == 2


def test_axis_titles_state_unit_and_direction(data: ReportInput) -> None:
    assert pareto_front_info(data).axis_titles == (
        "acc: Top-1 % (higher is better)",
        "mem: max MB/device (lower is better)",
    )


def test_baselines_keep_label_values_and_feasibility(data: ReportInput) -> None:
    baselines = pareto_front_info(data).baselines
    assert [(b.method, b.label, b.values, b.feasible) for b in baselines] == [
        ("lop", "LOP", (60.0, 0.3), True),
        ("replication", "Full replication", (96.0, 3.0), False),
    ]


def test_subtitle_names_both_provenances(data: ReportInput) -> None:
    subtitle = pareto_front_info(data).subtitle
    assert "acc: measured by simulated device failures" in subtitle
    assert "mem: costs estimated by the cost model" in subtitle
    assert "3 × test_board" in subtitle


@pytest.mark.parametrize(
    ("points", "maximize", "expected"),
    [
        (np.zeros((0, 2)), [False, False], []),
        ([[1.0, 1.0], [1.0, 1.0]], [False, False], [True, True]),  # ties: both kept
        ([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]], [False, False], [True, True, False]),
        ([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]], [True, True], [False, False, True]),
        ([[90.0, 1.0], [80.0, 1.0]], [True, False], [True, False]),  # equal in one
        ([[np.inf, 1.0], [5.0, 0.5]], [True, False], [True, True]),
    ],
)
def test_non_dominated(
    points: list[list[float]], maximize: list[bool], expected: list[bool]
) -> None:
    mask = non_dominated(np.asarray(points, dtype=float).reshape(-1, 2), maximize)
    assert mask == expected


def test_non_dominated_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    points = rng.integers(0, 5, size=(40, 3)).astype(float)
    maximize = [True, False, False]
    signed = points * np.where(maximize, -1.0, 1.0)
    brute = [not any((q <= p).all() and (q < p).any() for q in signed) for p in signed]
    assert non_dominated(points, maximize) == brute


def test_no_feasible_trial_gives_an_empty_front(
    make: Callable[..., ReportInput], trials: pd.DataFrame
) -> None:
    trials["feasible"] = False
    info = pareto_front_info(make(trials=trials, default_trial=None))
    assert info.front.trials == () and info.dominated.trials == ()
    assert info.infeasible.trials == (0, 1, 2, 3)


def test_2d_plot_marks_each_group_and_the_selection(data: ReportInput) -> None:
    fig = plot_pareto_front(pareto_front_info(data))
    assert isinstance(fig, go.Figure)
    by_name = {trace.name: trace for trace in fig.data}
    assert set(by_name) == {
        "dominated",
        "infeasible",
        "Pareto front",
        "LOP",
        "Full replication (infeasible)",
        "selected trial",
    }
    assert by_name["dominated"].opacity < 1
    assert by_name["infeasible"].marker.symbol == "x"
    assert list(by_name["Pareto front"].customdata) == [1, 0]  # sorted along acc
    assert list(by_name["selected trial"].x) == [80.0]
    assert list(by_name["LOP"].text) == ["LOP"]
    assert fig.layout.xaxis.title.text == "acc: Top-1 % (higher is better)"
    assert "measured" in fig.layout.title.subtitle.text


def test_3d_plot_and_scatter_matrix_for_three_objectives(
    make: Callable[..., ReportInput], objectives3: tuple[ObjectiveMeta, ...]
) -> None:
    info = pareto_front_info(make(objectives3))
    fig = plot_pareto_front(info)
    assert all(isinstance(t, go.Scatter3d) for t in fig.data)
    assert fig.layout.scene.zaxis.title.text == "energy: max J/img/device (lower is better)"
    matrix = plot_scatter_matrix(info)
    cells = 3  # (acc, mem), (acc, energy), (mem, energy)
    assert len(matrix.data) == cells * len(fig.data)
    rings = [t for t in matrix.data if t.name == "selected trial"]
    assert [list(t.meta) for t in rings] == [[0, 1], [0, 2], [1, 2]]
    assert sum(bool(t.showlegend) for t in matrix.data) == len(fig.data) - 1  # no ring


def test_one_objective_plots_value_against_trial_number(
    make: Callable[..., ReportInput],
) -> None:
    acc = ObjectiveMeta("acc", "Top-1 %", maximize=True, accuracy=True)
    fig = plot_pareto_front(pareto_front_info(make((acc,))))
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert list(front.x) == [0.0] and list(front.y) == [90.0]  # trial 0 has the best acc
    assert fig.layout.xaxis.title.text == "trial number"
    with pytest.raises(ValueError, match="at least 2 objectives"):
        plot_scatter_matrix(pareto_front_info(make((acc,))))
