"""Tiny versions of the paper's studies: one small embedded model, few images, seconds each."""

from __future__ import annotations

from dataclasses import replace

import pytest

from studies import STUDIES, AblationSpec, FailureSweepSpec, ResourceSpec

MODEL = "digits-vgg-bn"  # the tests' session model: trained once, cached in .cache/robustdice
SIZES = {"calibration_size": 32, "test_size": 60}


@pytest.fixture
def tiny_table1() -> AblationSpec:
    spec = STUDIES.get("table1")
    assert isinstance(spec, AblationSpec)
    return replace(
        spec,
        models=(MODEL,),
        seeds=(0,),
        score_subsets=(("s1",), ("s1", "s3"), ("s1", "s2", "s3")),
        control_seeds=1,
        **SIZES,
    )


@pytest.fixture
def tiny_fig4() -> FailureSweepSpec:
    spec = STUDIES.get("fig4")
    assert isinstance(spec, FailureSweepSpec)
    return replace(spec, models=(MODEL,), devices=(3, 2), **SIZES)


@pytest.fixture
def tiny_table2() -> ResourceSpec:
    spec = STUDIES.get("table2")
    assert isinstance(spec, ResourceSpec)
    return replace(spec, models=(MODEL,), **SIZES)
