"""Threshold scales (`dse._scales`): the quantile scale spreads every unit's replication."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dse import RobustnessProblem, StudySettings
from dse._scales import DEFAULT_SCALE, THRESHOLD_SCALES, QuantileThresholds, ScaledRobustDiCE
from robustdice_core import InvalidParameterError, UnknownNameError
from robustdice_core.partition import DendrogramClustering, RobustDiCE


def cloud(seed: int, size: int, dims: int = 3) -> np.ndarray:
    """Points in general position (distinct pairwise distances almost surely)."""
    return np.random.default_rng(seed).random((size, dims))


@given(seed=st.integers(0, 2**16), size=st.integers(2, 40), u=st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_quantile_thresholds_run_from_zero_to_one_cluster_monotonically(
    seed: int, size: int, u: float
) -> None:
    points = cloud(seed, size)
    scale = QuantileThresholds([points])
    one_cluster = RobustDiCE([points]).one_cluster_thresholds[0]
    assert scale.thresholds([0.0]) == [0.0]
    assert scale.thresholds([1.0]) == [one_cluster]
    assert scale.thresholds([u])[0] <= scale.thresholds([min(1.0, u + 0.01)])[0]
    assert 0.0 <= scale.thresholds([u])[0] <= one_cluster


@given(seed=st.integers(0, 2**16), size=st.integers(2, 40), data=st.data())
@settings(max_examples=60, deadline=None)
def test_each_knot_of_the_quantile_scale_is_one_merge_more(
    seed: int, size: int, data: st.DataObject
) -> None:
    """At u = k / (n - 1) the dendrogram cut has n - k clusters: the count falls evenly."""
    points = cloud(seed, size)
    k = data.draw(st.integers(0, size - 1))
    threshold = QuantileThresholds([points]).thresholds([k / (size - 1)])[0]
    labels = DendrogramClustering().prepare(points).labels(threshold)
    assert len(set(labels.tolist())) == size - k


def test_a_single_neuron_unit_always_gets_threshold_zero() -> None:
    scale = QuantileThresholds([np.zeros((1, 3)), cloud(0, 5)])
    assert scale.thresholds([0.7, 0.0]) == [0.0, 0.0]


def test_values_outside_zero_one_are_clipped() -> None:
    scale = QuantileThresholds([cloud(1, 6)])
    assert scale.thresholds([-0.5]) == scale.thresholds([0.0])
    assert scale.thresholds([1.5]) == scale.thresholds([1.0])


def test_the_scaled_partitioner_spans_full_replication_to_one_cluster() -> None:
    points = [cloud(2, 16), cloud(3, 40)]
    scaled = ScaledRobustDiCE(RobustDiCE(points), QuantileThresholds(points))
    assert scaled.partition_for([0.0, 0.0], 4).replication_factor == 4.0
    one = scaled.partition_for([1.0, 1.0], 4)
    assert one.thresholds == tuple(RobustDiCE(points).one_cluster_thresholds)


def test_large_units_replicate_across_the_quantile_range() -> None:
    """The point of the scale: uniform parameters replicate a large unit about as much as
    a small one, where the linear scale (uniform thresholds) hardly replicates it."""
    rng = np.random.default_rng(0)
    small = rng.random((16, 3))
    large = rng.random((256, 3))  # denser: nearest neighbours far closer than the diameter
    points = [small, large]
    robustdice = RobustDiCE(points)
    quantile = ScaledRobustDiCE(robustdice, QuantileThresholds(points))
    highs = robustdice.one_cluster_thresholds
    draws = rng.random((100, 2))
    linear = np.array(
        [robustdice.partition_for(list(u * highs), 4).unit_replication for u in draws]
    )
    spread = np.array([quantile.partition_for(list(u), 4).unit_replication for u in draws])
    assert spread[:, 1].mean() > 2.0 and np.mean(spread[:, 1] > 1.5) > 0.6
    assert linear[:, 1].mean() < spread[:, 1].mean() - 0.5


def test_scales_are_a_registry_with_linear_the_default() -> None:
    assert THRESHOLD_SCALES.names() == ["linear", "quantile"] and DEFAULT_SCALE == "linear"
    with pytest.raises(UnknownNameError, match="unknown threshold scale `log2`"):
        StudySettings(threshold_scale="log2")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "budgeted", "threshold_scale": "quantile"}, "`--threshold-scale` sets"),
        (
            {"threshold_scale": "quantile", "threshold_range": (0.0, 0.5)},
            "`--threshold-range` gives raw thresholds",
        ),
    ],
)
def test_threshold_options_where_no_raw_threshold_is_searched_are_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        StudySettings(**changes)  # type: ignore[arg-type]


def test_stored_settings_keep_their_scale_and_old_keys() -> None:
    linear = StudySettings()
    assert "threshold_scale" not in linear.to_dict()  # existing studies keep their names
    quantile = StudySettings(threshold_scale="quantile")
    assert quantile.to_dict()["threshold_scale"] == "quantile"
    assert StudySettings.from_dict(quantile.to_dict()) == quantile
    assert StudySettings.from_dict(linear.to_dict()).threshold_scale == "linear"
    assert quantile.default_study_name() != linear.default_study_name()
    both = StudySettings(method="both", threshold_scale="quantile")
    assert StudySettings.from_dict(both.to_dict()) == both


def test_a_quantile_study_searches_zero_to_one_per_unit() -> None:
    settings = StudySettings(
        model="digits-vgg-bn", objectives=("acc", "mem"), test_size=40, threshold_scale="quantile"
    )
    problem = RobustnessProblem(settings)
    space = problem.space
    assert all(n.startswith("t:") for n in space.names)
    assert set(space.low) == {0.0} and set(space.high) == {1.0}
    full = problem.evaluate_params(space.low).partition
    assert full.replication_factor == 4.0
    one = problem.evaluate_params(space.high).partition
    highs = problem.bench.robustdice().one_cluster_thresholds
    assert all(math.isclose(t, h) for t, h in zip(one.thresholds, highs, strict=True))
