"""A study request checked against its spec before any work: models, seeds, weights, data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from robustdice_core import InvalidParameterError, UnknownNameError
from studies import STUDIES, Configuration, ModelRun, ResourceSpec, StudyRequest, plan_runs

TABLE1 = STUDIES.get("table1")
FIG4 = STUDIES.get("fig4")


def test_default_runs_every_embedded_model_and_seed() -> None:
    runs = plan_runs(TABLE1, StudyRequest())
    assert [r.name for r in runs[:3]] == [
        "digits-alexnet",
        "digits-alexnet@seed1",
        "digits-alexnet@seed2",
    ]
    assert len(runs) == 9 and {r.model for r in runs} == {
        "digits-alexnet",
        "digits-vgg-bn",
        "digits-convnext",
    }
    assert all(run.weights is None and run.data is None for run in runs)


def test_model_and_seed_overrides() -> None:
    runs = plan_runs(FIG4, StudyRequest(models=("digits-vgg-bn",), seeds=(0, 4)))
    assert runs == (
        ModelRun("digits-vgg-bn", 0, "digits-vgg-bn"),
        ModelRun("digits-vgg-bn", 4, "digits-vgg-bn@seed4"),
    )
    (one,) = plan_runs(TABLE1, StudyRequest(models=("digits-convnext@seed7",)))
    assert (one.model, one.seed, one.name) == ("digits-convnext", 7, "digits-convnext@seed7")


def test_torchvision_models_use_their_one_set_of_weights(tmp_path: Path) -> None:
    (run,) = plan_runs(TABLE1, StudyRequest(models=("alexnet",), data=tmp_path))
    assert (run.name, run.seed, run.data) == ("alexnet", 0, tmp_path)
    weights = tmp_path / "w.pth"
    (run,) = plan_runs(TABLE1, StudyRequest(models=("vgg16_bn",), weights=weights))
    assert run.weights == weights


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"models": ("alexnet",), "seeds": (1,)}, "`--seeds` are training seeds"),
        ({"models": ("alexnet@seed1",)}, "has no training seeds"),
        ({"models": ("digits-vgg-bn@seedx",)}, "`NAME@seedN`"),
        ({"models": ("digits-vgg-bn@seed1",), "seeds": (2,)}, "leave out `--seeds`"),
        ({"weights": Path("w.pth")}, "`--weights` is one model's file"),
        (
            {"models": ("digits-vgg-bn",), "weights": Path("w.pth"), "seeds": (1,)},
            "training seeds do not apply",
        ),
        ({"models": ("digits-vgg-bn",), "data": Path(".")}, "`--data` is for ImageNet"),
        ({"models": ("digits-vgg-bn", "digits-vgg-bn@seed0")}, "twice"),
        ({"seeds": (0, 0)}, "lists a seed twice"),
        ({"seeds": (-1,)}, "whole numbers from 0"),
        ({"seeds": ()}, "at least one training seed"),
        ({"models": ()}, "at least one model"),
        ({"test_size": 0}, "`--test-size` must be at least 1"),
    ],
)
def test_bad_requests_fail_in_one_line(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        plan_runs(TABLE1, StudyRequest(**fields))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_model_and_study_list_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="choose one of: alexnet"):
        plan_runs(TABLE1, StudyRequest(models=("resnet-9000",)))
    with pytest.raises(UnknownNameError, match="unknown study `table9`; choose one of: fig3"):
        STUDIES.get("table9")


def test_spec_checks_its_own_fields() -> None:
    with pytest.raises(InvalidParameterError, match="`failed` must be in 1..3"):
        replace(TABLE1, failed=4)
    with pytest.raises(InvalidParameterError, match="`models` must name one model"):
        replace(FIG4, models=())
    with pytest.raises(UnknownNameError, match="`methods`: unknown partitioner `magic`"):
        replace(FIG4, methods=("robustdice", "magic"))
    with pytest.raises(UnknownNameError, match="unknown importance score `s4`"):
        replace(TABLE1, score_subsets=(("s1", "s4"),))
    with pytest.raises(InvalidParameterError, match="replication"):
        replace(TABLE1, replication_targets=(9.0,))
    with pytest.raises(InvalidParameterError, match="counts of at least 2"):
        replace(FIG4, devices=(4, 1))
    table2 = STUDIES.get("table2")
    assert isinstance(table2, ResourceSpec)
    bad = Configuration("budgeted", 4, "B")
    with pytest.raises(InvalidParameterError, match="uses method `budgeted`"):
        replace(table2, configurations=(*table2.configurations, bad))
    with pytest.raises(InvalidParameterError, match="`reference` 'QMR' must be one of"):
        replace(table2, configurations=(Configuration("lop", 4, "L"),))


def test_request_sizes_override_the_spec() -> None:
    spec = StudyRequest(test_size=40).applied_to(TABLE1)
    assert spec.test_size == 40 and spec.calibration_size == TABLE1.calibration_size
    assert StudyRequest().applied_to(TABLE1) == TABLE1
