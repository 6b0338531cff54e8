"""`dse calibrate`: a device profile fitted to measured runs recovers known parameters."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from dse import StudySettings
from dse._calibrate import CalibrationPoint, _cost_info, calibrate, write_profile
from dse._measure import MEASUREMENTS_FORMAT
from dse.cli import main
from robustdice_core import InvalidParameterError
from robustdice_core.costs import (
    DeviceProfile,
    LinkProfile,
    ModelCostInfo,
    ProfileValue,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.partition import Partition

MODEL = "digits-vgg-bn"


@pytest.fixture(scope="module")
def info() -> ModelCostInfo:
    return _cost_info(MODEL)


@pytest.fixture(scope="module")
def base() -> DeviceProfile:
    return load_device_profile("this_machine")


@pytest.fixture(scope="module")
def link() -> LinkProfile:
    return load_link_profile("gigabit_ethernet")


def truth(base: DeviceProfile) -> DeviceProfile:
    """The profile the synthetic runs come from."""
    return dataclasses.replace(
        base,
        compute_efficiency_fp32=ProfileValue(0.02, "truth", True),
        unit_overhead_s=ProfileValue(4e-4, "truth", True),
        idle_power_w=ProfileValue(7.0, "truth", True),
        energy_per_flop_fp32_j=ProfileValue(3e-9, "truth", True),
    )


def partitions(info: ModelCostInfo) -> list[Partition]:
    """Two devices; unit u is replicated whole on both when bit u of the mask is set, else
    split in halves: different work per device and different gathers per partition."""
    sizes = [int(n) for n in info.num_neurons]
    out = []
    for mask in (0, 0b1, 0b101, 0b11110, 0b10101010, 0b11111111, 0b1100110):
        assignments = []
        for u, n in enumerate(sizes):
            half = n // 2
            if mask >> u & 1:
                assignments.append((tuple(range(n)), tuple(range(n))))
            else:
                assignments.append((tuple(range(half)), tuple(range(half, n))))
        out.append(Partition("hand", 2, tuple(sizes), tuple(assignments)))
    return out


def synthetic(
    info: ModelCostInfo, profile: DeviceProfile, link: LinkProfile, in_flight: int = 1
) -> list[CalibrationPoint]:
    points = []
    for i, partition in enumerate(partitions(info)):
        schedule = "overlapped" if in_flight > 1 else "barrier"
        costs = estimate_costs(
            partition,
            info,
            profile,
            link,
            schedule=schedule,
            in_flight=in_flight if in_flight > 1 else None,
        )
        points.append(
            CalibrationPoint(
                f"#{i}", partition, costs.fps, in_flight, costs.max_energy_j, "measured:test"
            )
        )
    return points


@pytest.mark.parametrize("in_flight", [1, 4])
def test_known_parameters_are_recovered(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile, in_flight: int
) -> None:
    true = truth(base)
    points = synthetic(info, true, link, in_flight)
    calibration = calibrate(points, info, base, link, hold_out=("#5", "#6"), source="test")
    profile = calibration.profile
    assert "compute_efficiency_fp32" in calibration.fitted
    assert profile.compute_efficiency_fp32.value == pytest.approx(0.02, rel=1e-3)
    assert profile.unit_overhead_s.value == pytest.approx(4e-4, rel=1e-3)
    assert profile.idle_power_w.value == pytest.approx(7.0, rel=1e-3)
    assert profile.energy_per_flop_fp32_j.value == pytest.approx(3e-9, rel=1e-3)
    for error in calibration.errors:  # held-out runs included
        assert abs(error.fitted_error_pct) < 0.1
    assert max(abs(e.base_error_pct) for e in calibration.errors) > 50
    held = calibration.summary(held_out=True)
    assert held is not None and held[1] < 0.1
    assert profile.compute_efficiency_fp32.estimated
    assert profile.compute_efficiency_fp32.source.startswith("test; FPS residual")
    assert profile.memory_bytes == base.memory_bytes  # not fitted: the base's, with its source


def slow_link(link: LinkProfile) -> LinkProfile:
    """The same link with the runtime's per-message costs: 2 ms a message."""
    return dataclasses.replace(link, latency_s=ProfileValue(2e-3, "truth", True))


def test_link_latency_is_fitted_when_asked(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile
) -> None:
    points = synthetic(info, truth(base), slow_link(link))
    calibration = calibrate(points, info, base, link, fit_link=True, source="test")
    assert calibration.link is not None
    assert calibration.link.latency_s.value == pytest.approx(2e-3, rel=1e-3)
    assert calibration.profile.unit_overhead_s.value == pytest.approx(4e-4, rel=1e-3)
    assert calibrate(points, info, base, link, source="test").link is None


def test_message_overhead_is_told_apart_from_link_latency(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile
) -> None:
    """Processor time per message and link delay per message both slow one image down; only
    the processor time also caps the overlapped schedule, so runs of both schedules tell
    them apart."""
    true = dataclasses.replace(truth(base), message_overhead_s=ProfileValue(1e-3, "truth", True))
    points = [
        dataclasses.replace(p, label=f"{p.label}/{k}")
        for k in (1, 4)
        for p in synthetic(info, true, slow_link(link), k)
    ]
    calibration = calibrate(points, info, base, link, fit_link=True, source="test")
    assert "message_overhead_s" in calibration.fitted
    assert calibration.profile.message_overhead_s.value == pytest.approx(1e-3, rel=1e-3)
    assert calibration.link is not None
    assert calibration.link.latency_s.value == pytest.approx(2e-3, rel=1e-3)
    assert max(abs(e.fitted_error_pct) for e in calibration.errors) < 0.1


def test_without_a_meter_energy_keeps_the_base(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile
) -> None:
    points = [
        dataclasses.replace(p, energy_j=None, energy_source="not measured")
        for p in synthetic(info, truth(base), link)
    ]
    calibration = calibrate(points, info, base, link, source="test")
    assert calibration.profile.idle_power_w == base.idle_power_w
    assert "idle_power_w" in calibration.kept


def test_too_few_or_degenerate_runs_are_refused(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile
) -> None:
    points = synthetic(info, truth(base), link)
    with pytest.raises(InvalidParameterError, match="at least 3 measured runs"):
        calibrate(points[:2], info, base, link)
    with pytest.raises(InvalidParameterError, match="at least 3 measured runs"):
        calibrate(points[:4], info, base, link, hold_out=("#0", "#1"))
    same = [dataclasses.replace(points[0], label=f"#{i}") for i in range(4)]
    with pytest.raises(InvalidParameterError, match="same partition"):
        calibrate(same, info, base, link)
    with pytest.raises(InvalidParameterError, match="#9"):
        calibrate(points, info, base, link, hold_out=("#9",))


def measurements_file(
    path: Path,
    info: ModelCostInfo,
    profile: DeviceProfile,
    link: LinkProfile,
    in_flight: int = 1,
    **setting: object,
) -> Path:
    """A `dse measure --json` file whose runs the profile predicts exactly."""
    entries = []
    for point in synthetic(info, profile, link, in_flight):
        measured = {
            "subject": f"trial:{point.label[1:]}",
            "fps": point.fps,
            "in_flight": in_flight,
            "images": 16,
            "energy_j": None,
            "energy_source": "not measured",
        }
        entries.append({"measurement": measured, "partition": point.partition.to_dict()})
    data = {
        "format": MEASUREMENTS_FORMAT,
        "study": "synthetic",
        "model": MODEL,
        "devices": 2,
        "device_profile": "this_machine",
        "link_profile": link.name,
        "dtype": "fp32",
        "entries": entries,
        **setting,
    }
    path.write_text(json.dumps(data))
    return path


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dse", *args])
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def test_cli_writes_a_profile_that_optimize_accepts(
    info: ModelCostInfo,
    base: DeviceProfile,
    link: LinkProfile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = measurements_file(tmp_path / "m.json", info, truth(base), link)
    out = tmp_path / "calibrated.toml"
    assert (
        run_main(monkeypatch, "calibrate", str(file), "--out", str(out), "--hold-out", "5,6") == 0
    )
    text = capsys.readouterr().out
    assert "held-out runs: calibrated median" in text and "held out" in text
    profile = load_device_profile(out)
    assert profile.name == "this_machine_calibrated"
    assert profile.compute_efficiency_fp32.value == pytest.approx(0.02, rel=1e-3)
    assert profile.compute_efficiency_fp32.source.startswith(
        "measured: fitted by dse calibrate on "
    )
    assert "from 5 runs of study `synthetic`" in profile.compute_efficiency_fp32.source
    settings = StudySettings(model=MODEL, device_profile=str(out))  # `dse optimize` accepts it
    assert settings.device_profile == str(out)
    slow = measurements_file(tmp_path / "slow.json", info, truth(base), slow_link(link))
    link_out = tmp_path / "link.toml"
    args = ["calibrate", str(slow), "--out", str(out), "--link-out", str(link_out)]
    assert run_main(monkeypatch, *args) == 0
    fitted = load_link_profile(link_out)
    assert fitted.name == "gigabit_ethernet_calibrated"
    assert fitted.latency_s.value == pytest.approx(2e-3, rel=1e-3)


def test_cli_fits_runs_of_both_schedules_together(
    info: ModelCostInfo,
    base: DeviceProfile,
    link: LinkProfile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    true = dataclasses.replace(truth(base), message_overhead_s=ProfileValue(1e-3, "truth", True))
    files = [
        str(measurements_file(tmp_path / f"k{k}.json", info, true, slow_link(link), k))
        for k in (1, 4)
    ]
    out, link_out = tmp_path / "p.toml", tmp_path / "l.toml"
    args = ["calibrate", *files, "--out", str(out), "--link-out", str(link_out)]
    assert run_main(monkeypatch, *args, "--hold-out", "5,6") == 0
    text = capsys.readouterr().out
    assert "#5 (4 in flight)" in text and "#0 (1 in flight)" in text
    assert "from 10 runs of study" in load_device_profile(out).message_overhead_s.source
    assert load_device_profile(out).message_overhead_s.value == pytest.approx(1e-3, rel=1e-3)
    assert load_link_profile(link_out).latency_s.value == pytest.approx(2e-3, rel=1e-3)
    other = measurements_file(tmp_path / "nd3.json", info, true, link, devices=3)
    assert run_main(monkeypatch, "calibrate", files[0], str(other), "--out", str(out)) == 2
    assert "measure different settings (devices: 3 vs 2)" in capsys.readouterr().err
    for file, emulated in zip(files, ("gigabit_ethernet", "none"), strict=True):
        data = json.loads(Path(file).read_text())
        for entry in data["entries"]:
            entry["measurement"]["link"] = emulated
        Path(file).write_text(json.dumps(data))
    assert run_main(monkeypatch, "calibrate", *files, "--out", str(out)) == 2
    assert "measured on different links (gigabit_ethernet, none" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "--out", "p.toml"], "does not exist"),
        (["bad.json", "--out", "p.toml"], "is not a measurements file"),
        (["m.json", "--out", "p.txt"], "must name a .toml file"),
        (["m.json", "--out", "no/such/folder/p.toml"], "existing folder"),
        (["m.json", "--out", "p.toml", "--hold-out", "0,1,2,3,4"], "at least 3 measured runs"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    info: ModelCostInfo,
    base: DeviceProfile,
    link: LinkProfile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    measurements_file(tmp_path / "m.json", info, truth(base), link)
    (tmp_path / "bad.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    assert run_main(monkeypatch, "calibrate", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.toml").exists()


def test_written_profile_round_trips(
    info: ModelCostInfo, base: DeviceProfile, link: LinkProfile, tmp_path: Path
) -> None:
    calibration = calibrate(synthetic(info, truth(base), link), info, base, link, source="s")
    path = write_profile(calibration.profile, tmp_path / "p.toml")
    loaded = load_device_profile(path)
    assert dataclasses.replace(loaded, path="") == calibration.profile
