"""The timeout study (`dse timeout-study`): a tiny sweep on a real local mesh, its CSV and HTML,
and the command line's refusals."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dse._cli_timeout import seconds
from dse._timeout_page import timeout_page
from dse._timeout_study import (
    DEFAULT_TIMEOUTS_S,
    HEARTBEAT_DIVISOR,
    TimeoutStudy,
    check_fail_rank,
    log_timeouts,
    parse_timeouts,
    run_timeout_study,
)
from dse.cli import app
from robustdice_core import InvalidParameterError, RobustDiceError
from robustdice_core.bundle import write_bundle
from robustdice_core.partition import RobustDiCE
from robustdice_core.units import trace_model
from robustdice_core.zoo import load_model
from runtime import curve_keypairs

MODEL = "digits-alexnet"  # the fastest embedded model
ND = 3
TIMEOUTS = (1e-4, 3e-2)
IMAGES = 12
FAIL_AT = 6

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RobustDiCE partition of the digits AlexNet on 3 devices (seeded random scores: the
    study cares about the runtime, not about which neurons are copied)."""
    loaded = load_model(MODEL)
    traced = trace_model(loaded.module, loaded.spec.input_shape)
    sizes = [u.num_neurons for u in traced.units]
    rng = np.random.default_rng(0)
    partition = RobustDiCE([rng.random((n, 2)) for n in sizes], 0.4).partition(sizes, ND)
    out = tmp_path_factory.mktemp("timeout") / "bundle"
    keys = curve_keypairs(ND + 1)
    write_bundle(out, loaded, partition, keys=keys[:ND], client_key=keys[ND], traced=traced)
    return out


@pytest.fixture(scope="module")
def study(bundle: Path) -> TimeoutStudy:
    test = load_model(MODEL).spec.eval_data(None, calibration_size=None, test_size=IMAGES).test
    return run_timeout_study(
        bundle, test.images, test.labels, timeouts_s=TIMEOUTS, fail_rank=2, fail_at=FAIL_AT
    )


# ----------------------------------------------------------------- the library
def test_timeouts_are_parsed_checked_and_sorted() -> None:
    assert parse_timeouts("3e-2, 1e-5,5e-4") == (1e-5, 5e-4, 3e-2)
    grid = log_timeouts(11)
    assert len(grid) == 11 and grid[0] == 1e-5 and grid[-1] == 3e-2
    assert all(a < b for a, b in zip(grid, grid[1:], strict=False))
    assert DEFAULT_TIMEOUTS_S[0] == 1e-5 and DEFAULT_TIMEOUTS_S[-1] == 3e-2
    assert 5e-4 in DEFAULT_TIMEOUTS_S  # the paper's example of a small timeout
    for text, message in [
        ("1e-6", "must lie in 1e-05..1 s, got 1e-06"),
        ("0.5,2", "must lie in 1e-05..1 s, got 2"),
        ("nan", "must lie in"),
        ("1e-3,0.001", "lists a timeout twice"),
        ("a,b", "must be seconds separated by commas"),
        (",", "at least one timeout"),
    ]:
        with pytest.raises(InvalidParameterError, match=message):
            parse_timeouts(text)
    with pytest.raises(InvalidParameterError, match="`--points` must be at least 2"):
        log_timeouts(1)
    with pytest.raises(InvalidParameterError, match=r"`--fail` must be a node .*0\.\.3, got 4"):
        check_fail_rank(4, 4)
    with pytest.raises(InvalidParameterError, match="at least 2 devices"):
        check_fail_rank(1, 0)


@pytest.mark.slow  # the module's study: 4 streams on real nodes, ~25 s
def test_a_tiny_sweep_on_real_nodes(study: TimeoutStudy) -> None:
    base = study.baseline
    assert (base.scenario, base.failed, base.transient_images) == ("no failure", None, 0)
    assert [p.timeout_s for p in study.points] == list(TIMEOUTS)
    assert study.num_devices == ND and study.failed == 2 and study.fail_at == FAIL_AT
    assert study.link == "none" and base.link == "none"
    # with no failure every answer is the model's own (the runtime's equivalence)
    assert base.lost == 0 and base.matching_simulation == base.answered == IMAGES - FAIL_AT
    assert base.top1_pct == pytest.approx(base.simulated_top1_pct)
    for point in study.points:
        assert point.scenario == "1 failed" and point.failed == 2
        assert point.heartbeat_s == pytest.approx(point.timeout_s / HEARTBEAT_DIVISOR)
        assert point.images == IMAGES - FAIL_AT and point.answered + point.lost == point.images
        assert 0 <= point.matching_simulation <= point.answered
        assert point.transient_images <= point.answered
        assert point.latency_p50_ms <= point.latency_p90_ms <= point.latency_max_ms
        assert point.false_downs >= 0 and point.absent_waits >= 0 and point.unadmitted >= 0
        assert not np.isnan(point.before_mean_ms)  # the same stream before the kill
    # the simulation is the same for every timeout: same images, same node down
    assert study.points[0].simulated_top1_pct == study.points[1].simulated_top1_pct
    # every survivor ends up counting the killed node down, within seconds
    slow = study.points[-1]
    assert slow.detection_s is not None and 0 <= slow.detection_s < 5


@pytest.mark.slow
def test_csv_and_html(study: TimeoutStudy, tmp_path: Path) -> None:
    path = study.write_csv(tmp_path / "t.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["scenario"] for r in rows] == ["no failure", "1 failed", "1 failed"]
    assert [float(r["timeout_s"]) for r in rows[1:]] == list(TIMEOUTS)
    assert rows[0]["failed"] == "" and rows[1]["failed"] == "2"
    assert {r["link"] for r in rows} == {"none"}
    for column in (
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_max_ms",
        "fps",
        "top1_pct",
        "simulated_top1_pct",
        "false_downs",
        "heartbeat_s",
        "transient_images",
    ):
        assert column in rows[0]
    page = timeout_page(study)
    assert page.startswith("<!DOCTYPE html>") and "plotly" in page
    assert "link: none (plain loopback, no emulation)" in page
    assert "heartbeat interval = timeout / 5" in page
    assert '"type":"log"' in page  # the timeout axis
    assert study.write_json(tmp_path / "t.json").read_text().count('"timeout_s"') == 3


# ----------------------------------------------------------------- the command line
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeouts", "1e-7"], "`--timeouts` must lie in 1e-05..1 s, got 1e-07"),
        (["--timeouts", "1e-3", "--points", "3"], "pass `--timeouts` or `--points`, not both"),
        (["--fail", "3"], "`--fail` must be a node of the bundle, 0..2, got 3"),
        (["--fail-at", "40", "--images", "20"], "`--fail-at` must be an image before the last"),
        (["--link", "carrier_pigeon"], "unknown link profile `carrier_pigeon`; choose one of"),
        (["--in-flight", "0"], "`--in-flight` must be at least 1"),
    ],
)
def test_cli_refuses_bad_input(bundle: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["timeout-study", str(bundle), *args])
    assert isinstance(result.exception, RobustDiceError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_cli_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    result = runner.invoke(app, ["timeout-study", str(tmp_path)])
    assert isinstance(result.exception, RobustDiceError)
    assert "manifest.json" in str(result.exception)


def test_cli_subprocess_bad_timeouts_is_one_line_and_exit_2(bundle: Path) -> None:
    command = [sys.executable, "-c", "from dse.cli import main; main()", "timeout-study",
               str(bundle), "--timeouts", "0.5,5"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: `--timeouts` must lie in 1e-05..1 s, got 5."


@pytest.mark.slow
def test_cli_runs_and_writes_its_files(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["timeout-study", str(bundle), "--timeouts", "0.03", "--images", "6", "--out",
            str(out)]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "30 ms" in result.output and "no failure" in result.output
    assert "link: none" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["timeout_study.csv", "timeout_study.html", "timeout_study.json"]


def test_durations_read_as_a_person_writes_them() -> None:
    assert [seconds(v) for v in (2e-5, 5e-4, 0.03, 1.0)] == ["20 us", "500 us", "30 ms", "1 s"]
