from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dse import OBJECTIVES, SAMPLERS, TIE_MODES, AccuracyMetric, RobustnessProblem, StudySettings
from dse.cli import app
from robustdice_core import RobustDiceError
from robustdice_core._device import ComputeDevice, DeviceKind
from robustdice_core.costs import DEFAULT_IN_FLIGHT, Precision, Schedule, estimate_costs
from robustdice_core.partition import LOP


def test_round_trip_and_key_are_stable() -> None:
    settings = StudySettings(model="digits-vgg-bn", failures=(1, 2), threshold_range=(0.0, 1.0))
    again = StudySettings.from_dict(settings.to_dict())
    assert again == settings
    assert again.key() == settings.key()


def test_default_study_name_changes_with_settings() -> None:
    base = StudySettings(model="digits-vgg-bn")
    other = StudySettings(model="digits-vgg-bn", sampler="random")
    assert base.default_study_name() != other.default_study_name()
    assert base.default_study_name().startswith("digits-vgg-bn-nd4-acc-mem-energy-")
    assert base.differences(other) == ["sampler"]


def test_values_are_typed_once_where_they_enter() -> None:
    settings = StudySettings.parse(
        objectives="acc, energy",
        acc_metric="mean",
        dtype="fp16",
        failures="1,2",
        scores=["s1", "s3"],
        threshold_range="0,1.5",
        weights=Path("w.pth"),
    )
    assert settings.objectives == ("acc", "energy")
    assert settings.acc_metric is AccuracyMetric.mean
    assert settings.dtype is Precision.FP16
    assert settings.failures == (1, 2)
    assert settings.scores == ("s1", "s3")
    assert settings.threshold_range == (0.0, 1.5)
    assert settings.weights == "w.pth"
    stored = settings.to_dict()
    assert stored["acc_metric"] == "mean" and stored["dtype"] == "fp16"  # JSON-able
    assert StudySettings.from_dict(stored) == settings


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "resnet9000"}, "unknown model `resnet9000`"),
        ({"scores": "s1,s4"}, "`--scores`: unknown importance score `s4`"),
        ({"scores": "s1,s1"}, "`--scores` lists"),
        ({"sampler": "cma"}, "unknown sampler `cma`"),
        ({"tie": "layer"}, "unknown tie mode `layer`"),
        ({"clustering": "kmeans"}, "unknown clustering `kmeans`"),
        ({"dtype": "int8"}, "`--dtype` must be one of fp32, fp16"),
        ({"failures": "one"}, "`--failures` must be integers"),
        ({"failures": ""}, "at least one number of failures"),
        ({"devices": 1}, "`--devices` must be in 2..64"),
        ({"seed": 2**40}, "`--seed` must be in 0..4294967295"),
        ({"devices": 16, "failures": "1,2,3,4,5"}, "failure sets to evaluate"),
        ({"fail_prob": 1.5}, "`--fail-prob` must be in [0, 1]"),
        ({"threshold_range": "1,0.5"}, "`--threshold-range` must satisfy"),
        ({"threshold_range": "0.5"}, "`--threshold-range` must be LOW,HIGH"),
        ({"population": 2}, "`--population` must be at least 4"),
        ({"max_mem_mb": 0}, "`--max-mem-mb` must be positive"),
        ({"test_size": 0}, "`--test-size` must be at least 1"),
        ({"device_profile": "jetson_nano"}, "unknown device profile"),
        ({"device": "tpu"}, "`--device` must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"device": "cpu:1"}, "`--device` takes an index only as cuda:N"),
        ({"batch_size": 0}, "`--batch-size` must be at least 1, got 0"),
        ({"racing": 0}, "`--racing` must be a fraction of the test images in (0, 1)"),
        ({"racing": 1.0}, "`--racing` must be a fraction"),
        ({"racing": "half"}, "`--racing` must be a number, got 'half'"),
        ({"racing": 0.2, "objectives": "mem,energy"}, "`--racing` races the `acc` objective"),
        ({"schedule": "async"}, "`--schedule` must be one of barrier, overlapped, got 'async'"),
        ({"in_flight": 4}, "`--in-flight` is 4, but `--schedule barrier` runs one image"),
        ({"schedule": "overlapped", "in_flight": 0}, "`--in-flight` must be an integer >= 1"),
        ({"schedule": "overlapped", "in_flight": "two"}, "`--in-flight` must be an integer"),
    ],
)
def test_invalid_settings_are_refused_with_the_flag_named(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(RobustDiceError, match=re.escape(message)):
        StudySettings.parse(**options)


def test_device_and_batch_size_are_run_settings_outside_the_study() -> None:
    """They change how a process computes, not what: the study's name and stored settings
    are the same on every device, so a GPU machine joins a study made on a CPU."""
    base = StudySettings(model="digits-vgg-bn")
    other = StudySettings.parse(model="digits-vgg-bn", device="cpu", batch_size=64)
    assert other.device == ComputeDevice(DeviceKind.CPU) and other.batch_size == 64
    assert other.torch_device == torch.device("cpu")
    assert other.to_dict() == base.to_dict() and other.key() == base.key()
    assert base.differences(other) == []
    assert not {"device", "batch_size"} & set(base.to_dict())
    assert StudySettings.from_dict(other.to_dict()).device == ComputeDevice()  # auto


def test_a_missing_cuda_device_is_refused_where_it_enters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert StudySettings.parse(device="cuda:0").torch_device == torch.device("cuda", 0)
    with pytest.raises(RobustDiceError, match=r"`--device cuda:7`: this machine has 1 CUDA"):
        StudySettings.parse(device="cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert StudySettings.parse(device="auto").torch_device == torch.device("cpu")


def test_racing_is_part_of_the_study_only_when_on() -> None:
    base = StudySettings(model="digits-vgg-bn")
    raced = StudySettings.parse(model="digits-vgg-bn", racing="0.25")
    assert raced.racing == 0.25 and "racing" not in base.to_dict()
    assert raced.key() != base.key() and base.differences(raced) == ["racing"]
    assert StudySettings.from_dict(raced.to_dict()) == raced


def test_the_overlapped_schedule_is_part_of_the_study_only_when_chosen() -> None:
    base = StudySettings(model="digits-vgg-bn")
    assert base.schedule is Schedule.BARRIER and base.in_flight is None
    assert not {"schedule", "in_flight"} & set(base.to_dict())  # old study keys hold
    assert StudySettings.parse(model="digits-vgg-bn", in_flight=1) == base
    overlapped = StudySettings.parse(model="digits-vgg-bn", schedule="overlapped")
    assert overlapped.in_flight == DEFAULT_IN_FLIGHT
    assert base.differences(overlapped) == ["schedule", "in_flight"]
    eight = overlapped.replace(in_flight=8)
    assert eight.key() not in (base.key(), overlapped.key())
    assert StudySettings.from_dict(eight.to_dict()) == eight
    assert eight.replace(schedule="barrier") == base  # the new schedule's own in-flight count


def test_the_fps_objective_follows_the_study_schedule() -> None:
    settings = StudySettings(model="digits-alexnet", objectives=("mem", "fps"))
    barrier = RobustnessProblem(settings)
    overlapped = RobustnessProblem(settings.replace(schedule="overlapped", in_flight=3))
    lop = LOP().partition(barrier.cost_info.num_neurons.astype(int).tolist(), 4)
    slow, fast = (p.evaluate_partition(lop).outcome.costs for p in (barrier, overlapped))
    assert (slow.schedule, fast.schedule, fast.in_flight) == (
        Schedule.BARRIER,
        Schedule.OVERLAPPED,
        3,
    )
    expected = estimate_costs(
        lop, barrier.cost_info, barrier.device, barrier.link, schedule="overlapped", in_flight=3
    )
    assert fast.fps == pytest.approx(expected.fps) and fast.fps > slow.fps


def test_replace_validates_and_keeps_the_rest() -> None:
    base = StudySettings(seed=3)
    assert base.replace(sampler="random").seed == 3
    with pytest.raises(RobustDiceError, match="unknown sampler"):
        base.replace(sampler="nope")


def test_cli_defaults_and_choices_come_from_settings_and_registries() -> None:
    result = CliRunner().invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for name in (*SAMPLERS.names(), *OBJECTIVES.names(), *TIE_MODES.names(), "budgeted"):
        assert name in text
    assert f"default: {StudySettings().sampler}" in text


def test_importing_dse_leaves_logging_alone() -> None:
    code = (
        "import optuna; before = optuna.logging.get_verbosity(); "
        "import dse, dse.cli; print(before == optuna.logging.get_verbosity())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
