"""Preparing a study's models in worker processes: every run once, errors come back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from robustdice_core import MissingResourceError
from studies import STUDIES, ModelRun
from studies._prepare import prepare_runs

SPEC = replace(STUDIES.get("fig4"), calibration_size=32, test_size=60)
VGG = ModelRun("digits-vgg-bn", 0, "digits-vgg-bn")


def test_nothing_to_do_with_one_job_or_one_run() -> None:
    messages: list[str] = []
    prepare_runs([VGG, VGG], SPEC, ("s1",), messages.append, jobs=1)
    prepare_runs([VGG], SPEC, ("s1",), messages.append, jobs=4)
    alexnet = ModelRun("alexnet", 0, "alexnet")  # architecture only: left to the study
    prepare_runs(
        [VGG, alexnet],
        SPEC,
        ("s1",),
        messages.append,
        jobs=2,
        need=lambda r: r is VGG,
        ready=_never,
    )
    assert messages == []


@pytest.mark.slow
def test_workers_prepare_the_runs_and_report_errors(tmp_path: Path) -> None:
    """Two workers, three runs (cached weights: ``ready`` forces the work), one broken."""
    messages: list[str] = []
    alexnet = ModelRun("digits-alexnet", 0, "digits-alexnet")
    broken = replace(VGG, weights=tmp_path / "missing.pth")
    with pytest.raises(MissingResourceError, match="missing.pth` does not exist"):
        prepare_runs([VGG, alexnet, broken], SPEC, ("s1",), messages.append, jobs=2, ready=_never)
    assert messages[0] == "training and scoring 3 models, 2 at a time"
    assert set(messages[1:]) <= {
        "digits-alexnet: weights and scores cached",
        "digits-vgg-bn: weights and scores cached",
    }


def test_runs_with_weights_here_are_left_to_the_study() -> None:
    messages: list[str] = []
    prepare_runs([VGG, VGG], SPEC, ("s1",), messages.append, jobs=2, ready=lambda run: True)
    assert messages == []


def _never(run: ModelRun) -> bool:
    return False
