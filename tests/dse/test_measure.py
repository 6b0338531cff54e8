"""`dse measure`: trials run on the local runtime, measured values stored beside estimates and
shown by `dse pareto` / `dse report`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from rich.console import Console

from dse import StudySettings, prepare_study, run_study
from dse._measure import MeasureResult, measure_study, read_measurements
from dse._optimize_view import front_table
from dse._pareto import front_change
from dse._report import build_report_input
from dse._results import load_snapshot, pareto_payload, trial_measurement
from dse._study import StudyLock
from dse.cli import main
from robustdice_core import InvalidParameterError

STUDY = "m"
SETTINGS = StudySettings(
    model="digits-vgg-bn", devices=2, objectives=("mem", "energy"), test_size=50
)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('measure') / 'studies.db'}"
    with prepare_study(SETTINGS, storage_url=url, study_name=STUDY) as prepared:
        run_study(prepared, trials=4)
    return url


@pytest.fixture(scope="module")
def measured(storage: str, tmp_path_factory: pytest.TempPathFactory) -> MeasureResult:
    """Trials 0 and 1 measured (8 images each, the study's link emulated)."""
    path = tmp_path_factory.mktemp("json") / "runs.json"
    return measure_study(storage, STUDY, trials=(0, 1), baselines=False, images=8, json_path=path)


def test_measurements_are_stored_with_provenance(storage: str, measured: MeasureResult) -> None:
    assert [e.measurement.subject for e in measured.entries] == ["trial:0", "trial:1"]
    attrs = optuna.load_study(study_name=STUDY, storage=storage).user_attrs
    stored = attrs["robustdice:measured:trial:1"]
    assert stored["provenance"].startswith("measured: local runtime, 2 nodes on ")
    snapshot = load_snapshot(storage, STUDY)
    m = trial_measurement(snapshot.trial(1))
    assert m is not None and m.to_dict() == stored
    assert m.fps > 0 and m.latency_p90_s >= m.latency_median_s > 0
    assert m.link == SETTINGS.link_profile  # emulated by the nodes
    assert (m.images, m.in_flight, m.num_devices) == (8, 4, 2)
    assert m.peak_rss_mb is not None and m.peak_rss_mb > 50  # a Python process with torch
    assert m.energy_j is None or m.energy_source.startswith("measured:")
    assert {"fps", "fps_overlapped", "max_memory_mb", "max_energy_j"} <= set(m.estimated)
    assert trial_measurement(snapshot.trial(2)) is None
    data = read_measurements(measured.json_path or Path())
    assert [e["measurement"]["subject"] for e in data["entries"]] == ["trial:0", "trial:1"]
    assert data["entries"][0]["partition"]["num_devices"] == 2


def test_pareto_and_report_show_measured_beside_estimated(
    storage: str, measured: MeasureResult
) -> None:
    snapshot = load_snapshot(storage, STUDY)
    console = Console(width=250, record=True)
    console.print(front_table(SETTINGS.objective_specs, snapshot.front, snapshot.baselines))
    text = console.export_text()
    assert "est / meas" in text and "measured: local runtime" in text
    payload = pareto_payload(snapshot)
    measured_rows = [r for r in payload["front"] if "measured" in r]
    assert {r["trial"] for r in measured_rows} == {0, 1} & {t.number for t in snapshot.front}
    assert "measured_front" in payload
    report = build_report_input(snapshot)
    assert any("est / meas" in note for note in report.notes)
    assert report.trials.loc[report.trials["trial"] == 1, "measured[FPS]"].item() > 0
    assert np.isnan(report.trials.loc[report.trials["trial"] == 2, "measured[FPS]"].item())


def test_remeasuring_replaces_and_says_so(storage: str, measured: MeasureResult) -> None:
    again = measure_study(storage, STUDY, trials=(1,), baselines=False, images=4)
    note = again.entries[0].measurement.notes[0]
    assert note.startswith("replaces the measurement of ")
    m = trial_measurement(load_snapshot(storage, STUDY).trial(1))
    assert m is not None and m.images == 4 and m.notes == (note,)


def test_front_change_replaces_measured_objectives() -> None:
    """Trials 1, 2, 3 on the estimated front (min, min); measured, 2 dominates 3, and 4
    (measured, off the estimated front) joins; energy is not measured so stays estimated."""
    nan = float("nan")
    change = front_change(
        [1, 2, 3, 4],
        [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [4.0, 4.0]],
        [[5.0, nan], [4.0, nan], [4.5, nan], [0.5, nan]],
        ["mem", "energy"],
        [False, False],
        {1, 2, 3},
    )
    assert change.measured_objectives == ("mem",) and change.estimated_objectives == ("energy",)
    assert change.measured_front == (2, 3, 4)
    assert (change.entered, change.left) == ((4,), (1,))
    partial = front_change(
        [1, 2],
        [[1.0, 2.0], [2.0, 1.0]],
        [[1.0, nan], [nan, nan]],
        ["mem", "energy"],
        [False, False],
        {1, 2},
    )
    assert partial.unmeasured == (2,) and not partial.comparable


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dse", *args])
    try:
        main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "42"], "`--trial 42` does not exist"),
        (["--trials", "two"], "`--trials` must be `pareto` or trial numbers"),
        (["--images", "0"], "`--images` must be at least 1"),
        (["--json", "no/such/folder/runs.json"], "`--json` must name a file"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    storage: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert run_main(monkeypatch, "measure", STUDY, "--storage", storage, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_study_without_trials_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with prepare_study(SETTINGS, storage_url=url, study_name="empty"):
        pass
    with pytest.raises(InvalidParameterError, match="has no completed trials yet"):
        measure_study(url, "empty")


def test_a_running_study_is_refused_and_left_as_it_was(storage: str) -> None:
    before = optuna.load_study(study_name=STUDY, storage=storage).user_attrs
    lock = StudyLock.for_study(storage, STUDY)
    assert lock is not None and lock.exclusive()
    try:
        with pytest.raises(InvalidParameterError, match="is being run by `dse optimize`"):
            measure_study(storage, STUDY, trials=(0,), baselines=False, images=2)
    finally:
        lock.release()
    assert optuna.load_study(study_name=STUDY, storage=storage).user_attrs == before


@pytest.mark.slow
def test_cli_measures_the_front_and_baselines(
    storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dse measure` on the front and the baselines, then `dse pareto --json` and
    `dse report` carry both values."""
    runs = tmp_path / "runs.json"
    args = ["measure", STUDY, "--storage", storage, "--images", "8", "--json", str(runs)]
    assert run_main(monkeypatch, *args) == 0
    subjects = [e["measurement"]["subject"] for e in json.loads(runs.read_text())["entries"]]
    assert {"baseline:lop", "baseline:replication"} <= set(subjects)
    snapshot = load_snapshot(storage, STUDY)
    assert all(trial_measurement(t) is not None for t in snapshot.front)
    assert snapshot.baselines["lop"].measured is not None
    assert snapshot.front_change().comparable
    report = tmp_path / "report.html"
    assert run_main(monkeypatch, "report", STUDY, "--storage", storage, "--out", str(report)) == 0
    assert "est / meas" in report.read_text()
