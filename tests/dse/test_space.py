from __future__ import annotations

import numpy as np
import pytest

from dse import TIE_MODES, build_space
from robustdice_core import InvalidParameterError, Unit, UnknownNameError


def _unit(index: int, name: str, kind: str = "conv") -> Unit:
    return Unit(
        index=index,
        name=name,
        kind=kind,
        num_neurons=4,
        linear_node=f"n{index}",
        sync_node=f"s{index}",
        channel_dim=1,
        sync_shape=(4, 1, 1),
        local_ops=(),
        params_per_neuron=1,
        macs_per_neuron=1,
    )


CONVNEXT_LIKE = [
    _unit(0, "features.0.0"),
    _unit(1, "features.1.0.block.0", "depthwise_conv"),
    _unit(2, "features.1.0.block.3", "linear"),
    _unit(3, "features.1.1.block.0", "depthwise_conv"),
    _unit(4, "features.1.1.block.3", "linear"),
    _unit(5, "classifier.2", "linear"),
]


def test_untied_space_has_one_parameter_per_unit_up_to_its_diameter() -> None:
    space = build_space(CONVNEXT_LIKE, [0.5, 1.0, 1.5, 0.2, 0.3, 0.9])
    assert len(space.names) == 6
    assert space.low == (0.0,) * 6
    assert space.high == (0.5, 1.0, 1.5, 0.2, 0.3, 0.9)
    assert space.thresholds([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_stage_tie_shares_a_threshold_across_blocks_of_a_stage() -> None:
    space = build_space(CONVNEXT_LIKE, [0.5, 1.0, 1.5, 0.2, 0.3, 0.9], tie="stage")
    # stem, (stage 1, dwconv), (stage 1, linear), classifier
    assert len(space.names) == 4
    assert space.unit_param == (0, 1, 2, 1, 2, 3)
    assert space.high[1] == 1.0  # the largest diameter of the tied units
    assert space.thresholds([0.1, 0.2, 0.3, 0.4]) == [0.1, 0.2, 0.3, 0.2, 0.3, 0.4]


def test_type_tie_has_one_parameter_per_layer_kind() -> None:
    space = build_space(CONVNEXT_LIKE, [1.0] * 6, tie="type")
    assert sorted(space.names) == ["t:conv", "t:depthwise_conv", "t:linear"]


def test_threshold_range_overrides_and_is_checked() -> None:
    space = build_space(CONVNEXT_LIKE, [1.0] * 6, threshold_range=(0.1, 0.7))
    assert set(space.low) == {0.1} and set(space.high) == {0.7}
    with pytest.raises(InvalidParameterError, match="threshold-range"):
        build_space(CONVNEXT_LIKE, [1.0] * 6, threshold_range=(0.7, 0.1))
    with pytest.raises(InvalidParameterError):
        build_space(CONVNEXT_LIKE, [1.0] * 6, threshold_range=(-1.0, 0.5))


def test_unknown_tie_mode_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="none, stage, type"):
        build_space(CONVNEXT_LIKE, [1.0] * 6, tie="block")
    assert TIE_MODES.names() == ["none", "stage", "type"]


def test_stage_tying_on_the_real_convnext_tiny() -> None:
    """docs/dse.md quotes this count: 59 units -> 14 parameters (4 stages x 3 roles, the
    stem and downsampling convs, the classifier)."""
    import torchvision

    from robustdice_core import trace_model

    traced = trace_model(torchvision.models.convnext_tiny(weights=None), (3, 224, 224))
    space = build_space(traced.units, [1.0] * len(traced.units), tie="stage")
    assert len(traced.units) == 59
    assert len(space.names) == 14
    assert "t:features.1/block.3" in space.names


def test_the_top_of_the_range_is_one_cluster_under_the_strict_comparison() -> None:
    """Three neurons at 0, 0.5, 1 (diameter 1): t = 1 keeps 0 and 1 apart (replication 2 on
    3 devices), the space's upper end makes one cluster (no replication)."""
    from robustdice_core import RobustDiCE

    points = [np.array([[0.0], [0.5], [1.0]])]
    partitioner = RobustDiCE(points)
    space = build_space([_unit(0, "features.0")], partitioner.one_cluster_thresholds)
    assert space.high[0] > 1.0 and space.high[0] == pytest.approx(1.0)
    top = partitioner.partition_for(space.thresholds(space.high), 3)
    assert top.replication_factor == 1.0
    assert partitioner.partition_for(1.0, 3).replication_factor == 2.0
