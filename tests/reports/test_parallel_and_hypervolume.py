"""Thresholds as parallel coordinates, and the hypervolume history."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import pytest

from reports import (
    ReportInput,
    hypervolume_info,
    parallel_coordinates_info,
    plot_hypervolume,
    plot_parallel_coordinates,
)
from reports._parallel import param_label


def test_axes_are_labelled_with_the_layers_they_set(data: ReportInput) -> None:
    info = parallel_coordinates_info(data)
    assert [a.param for a in info.axes] == ["t:a", "t:b"]
    assert [a.label for a in info.axes] == ["features.0 +1", "classifier.1"]  # t:a is tied
    assert [a.range for a in info.axes] == [(0.0, 1.5), (0.0, 2.0)]
    assert info.axes[1].values == pytest.approx((0.0, 0.2, 0.4, 0.6))
    assert info.trials == (0, 1, 2, 3)
    assert info.color_by.name == "acc"
    assert info.colors["mem"] == (1.0, 0.5, 0.8, 0.2)


def test_color_by_another_objective_or_a_clear_error(data: ReportInput) -> None:
    assert parallel_coordinates_info(data, color_by="mem").color_by.name == "mem"
    with pytest.raises(ValueError, match="`color_by` must be one of acc, mem"):
        parallel_coordinates_info(data, color_by="fps")


def test_long_layer_names_are_shortened_from_the_left() -> None:
    units = pd.DataFrame(
        {"unit": [0], "layer": ["features.1.0.block.3.very_long_name"], "param": ["t:x"]}
    )
    label = param_label(units, "t:x")
    assert label.startswith("…") and label.endswith("very_long_name") and len(label) == 22
    assert param_label(pd.DataFrame(), "t:x") == "t:x"


def test_without_units_the_t_columns_are_the_axes(make: Callable[..., ReportInput]) -> None:
    info = parallel_coordinates_info(make(units=pd.DataFrame()))
    assert [a.label for a in info.axes] == ["t:a", "t:b"]
    assert info.axes[0].range == pytest.approx((0.0, 0.3))  # the values' own span


def test_parallel_plot_has_a_colour_menu(data: ReportInput) -> None:
    fig = plot_parallel_coordinates(parallel_coordinates_info(data))
    assert isinstance(fig.data[0], go.Parcoords)
    labels = [d.label for d in fig.data[0].dimensions]
    assert labels == ["features.0 +1", "classifier.1", "acc (Top-1 %)"]
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == ["colour: acc", "colour: mem"]


def test_hypervolume_info_in_trial_order(make: Callable[..., ReportInput]) -> None:
    history = pd.DataFrame({"trial": [3, 0, 1], "hypervolume": [0.5, 0.1, 0.3]})
    info = hypervolume_info(make(hypervolume=history))
    assert info.trials == (0, 1, 3) and info.values == (0.1, 0.3, 0.5)
    assert info.final == 0.5
    fig = plot_hypervolume(info)
    assert list(fig.data[0].y) == [0.1, 0.3, 0.5]
    assert "final 0.5000" in fig.layout.title.text


def test_empty_hypervolume_history(make: Callable[..., ReportInput]) -> None:
    info = hypervolume_info(make(hypervolume=pd.DataFrame()))
    assert info.trials == () and info.final == 0.0
    assert isinstance(plot_hypervolume(info), go.Figure)
