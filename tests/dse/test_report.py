"""`dse report`: a real small study in, one self-contained HTML page out, that works in a
real (headless) browser: a click on the front selects a trial and shows its deploy command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from dse import ReferenceBox, StudySettings, load_snapshot, prepare_study, run_study
from dse._report import build_report_input, hypervolume_history, report_path, write_report
from dse.cli import app, main

STUDY = "rep"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


@dataclass(frozen=True)
class Made:
    storage: str
    out: Path
    hypervolume: float
    front: tuple[int, ...]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """6 trials of the default problem (acc, mem, energy on digits-vgg-bn, 4 devices)."""
    root = tmp_path_factory.mktemp("report")
    storage = str(root / "studies.log")
    with prepare_study(
        StudySettings(test_size=50), storage_url=storage, study_name=STUDY
    ) as prepared:
        result = run_study(prepared, trials=6)
    front = tuple(t.number for t in result.front)
    return Made(storage, root / "runs", result.hypervolume, front)


@pytest.fixture(scope="module")
def page(made: Made) -> Path:
    return write_report(made.storage, STUDY, made.out)


def report_json(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert found is not None
    return dict(json.loads(found.group(1)))


# ------------------------------------------------------------------------------ the input
def test_input_carries_objectives_devices_and_the_knee(made: Made) -> None:
    snapshot = load_snapshot(made.storage, STUDY)
    data = build_report_input(snapshot)
    assert [(o.name, o.maximize, o.accuracy) for o in data.objectives] == [
        ("acc", True, True),
        ("mem", False, False),
        ("energy", False, False),
    ]
    assert data.objectives[0].axis_title == "acc: Top-1 % (higher is better)"
    assert "worst Top-1 % over every failure set of 1 failed device(s) out of 4" in (
        data.objectives[0].description
    )
    assert data.devices == 4
    assert data.default_trial == snapshot.pick("knee").number
    assert data.default_trial in made.front
    assert data.deploy_command_for(3) == (
        f"dse deploy {STUDY} --trial 3 --storage {made.storage} --out bundle-3"
    )
    assert data.profile == "4 × jetson_xavier_nx_15w, gigabit_ethernet, fp32, barrier schedule"
    assert "50 test images" in data.accuracy_source


def test_frames_hold_the_records_and_the_layers(made: Made) -> None:
    data = build_report_input(load_snapshot(made.storage, STUDY))
    trials = data.trials.set_index("trial")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    for column in ("top1_pct[no failure]", "top1_pct[failed 3]", "energy_j[d3]", "gflops[d0]"):
        assert trials[column].notna().all(), column
    assert list(trials.loc[0, [f"unit_replication[u{u}]" for u in range(3)]]) == [4.0] * 3
    assert list(data.baselines["method"]) == ["lop", "cdc", "replication"]
    assert len(data.units) == 8 and data.units["layer"].iloc[0] == "features.0"
    assert data.params == [f"t:u{u:03d}" for u in range(8)]


def test_hypervolume_history_ends_at_the_study_value(made: Made) -> None:
    history = build_report_input(load_snapshot(made.storage, STUDY)).hypervolume
    assert list(history["trial"]) == list(range(6))
    values = history["hypervolume"].to_numpy()
    assert (np.diff(values) >= 0).all()
    assert values[-1] == pytest.approx(made.hypervolume)


def _trial(values: list[float], constraint: float = 0.0, state: TrialState = TrialState.COMPLETE):
    return optuna.trial.create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        params={"t": 0.1},
        distributions={"t": FloatDistribution(0.0, 1.0)},
        system_attrs={"constraints": [constraint]},
    )


def test_hypervolume_history_known_answers() -> None:
    box = ReferenceBox((0.0, 0.0), (1.0, 1.0), (False, False))
    trials = [
        _trial([0.5, 0.5]),  # 0.25
        _trial([0.1, 0.1], constraint=1.0),  # infeasible: adds nothing
        _trial([0.0, 0.0], state=TrialState.FAIL),  # failed: no row
        _trial([0.25, 0.75]),  # + 0.25 * 0.25
        _trial([0.6, 0.6]),  # dominated: adds nothing
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    history = hypervolume_history(trials, box)
    assert list(history["trial"]) == [0, 1, 3, 4]
    assert list(history["hypervolume"]) == pytest.approx([0.25, 0.25, 0.3125, 0.3125])


def test_report_path_defaults_beside_the_exports(tmp_path: Path) -> None:
    assert report_path("s") == Path("dse-runs") / "s" / "report.html"
    assert report_path("s", tmp_path) == tmp_path / "s" / "report.html"
    assert report_path("s", tmp_path / "mine.html") == tmp_path / "mine.html"


# ------------------------------------------------------------------------------ the page
def test_page_is_self_contained_and_embeds_every_trial(made: Made, page: Path) -> None:
    assert page == made.out / STUDY / "report.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: plotly.js inlined
    assert "<script src=http" not in html.replace('"', "").replace("'", "")
    assert "plotly.js v" in html and "Plotly.newPlot" in html
    payload = report_json(html)
    assert payload["initial"] in made.front
    assert set(payload["trials"]) == {str(n) for n in range(6)}
    detail = payload["trials"]["3"]
    assert detail["summary"]["deploy_command"].startswith(f"dse deploy {STUDY} --trial 3 ")
    assert set(detail["figures"]) == {"fig-failures", "fig-devices", "fig-replication"}
    for div in ("fig-front", "fig-matrix", "fig-failures", "fig-parallel", "fig-hypervolume"):
        assert f'id="{div}"' in html
    assert "Costs estimated by the cost model" in html


def test_cli_prints_one_line_ending_with_the_path(made: Made, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(
        app, ["report", STUDY, "--storage", made.storage, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    expected = out / STUDY / "report.html"
    assert len(lines) == 1 and lines[-1].endswith(str(expected))
    assert expected.is_file()


def test_cli_unknown_study_is_one_line_exit_2(
    made: Made, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["dse", "report", "nope", "--storage", made.storage])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "study `nope` does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_dse_report_subprocess_writes_the_default_path(made: Made, tmp_path: Path) -> None:
    """The real command, run where a user runs it: the report lands in dse-runs/<study>/."""
    process = subprocess.run(
        [sys.executable, "-m", "dse.cli", "report", "--storage", made.storage],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=os.environ.copy(),
    )
    assert process.returncode == 0, process.stderr
    last = process.stdout.strip().splitlines()[-1]
    assert last.endswith(str(Path("dse-runs") / STUDY / "report.html"))
    assert (tmp_path / "dse-runs" / STUDY / "report.html").is_file()


# ------------------------------------------------------------------------------ the browser
def _browser_or_skip() -> None:
    """Skip only on a developer machine without chromium; in CI a missing browser fails."""
    if shutil.which("chromium") is None and not os.environ.get("CI"):
        pytest.skip("chromium is not installed here: `make browser` installs it")


@pytest.fixture
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, script: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


# a plotly_click on the front figure, as plotly.js emits it, for a trial other than arguments[0]
CLICK = """
const gd = document.getElementById('fig-front');
for (const trace of gd.data) {
  if (trace.name === 'selected trial' || !trace.customdata) continue;
  const index = Array.from(trace.customdata).findIndex(n => n !== arguments[0]);
  if (index < 0) continue;
  const trial = trace.customdata[index];
  gd.emit('plotly_click', {points: [{customdata: trial, data: trace, pointNumber: index}]});
  return trial;
}
return null;
"""


@pytest.mark.browser
def test_clicking_a_point_selects_that_trial(page: Path, made: Made, browser: Any) -> None:
    browser.get(page.resolve().as_uri())
    _wait(browser, "return document.body.getAttribute('data-ready') === 'true'")
    initial = report_json(page.read_text(encoding="utf-8"))["initial"]
    assert browser.execute_script("return document.body.dataset.selectedTrial") == str(initial)
    assert f"--trial {initial} " in browser.find_element("id", "deploy-cmd").text

    trial = browser.execute_script(CLICK, initial)
    assert trial is not None and trial != initial
    _wait(browser, f"return document.body.dataset.selectedTrial === '{trial}'")
    assert browser.find_element("id", "sel-trial").text == f"#{trial}"
    command = browser.find_element("id", "deploy-cmd").text
    assert command == (
        f"dse deploy {STUDY} --trial {trial} --storage {made.storage} --out bundle-{trial}"
    )
    title = browser.execute_script(
        "return document.getElementById('fig-failures').layout.title.text"
    )
    assert f"trial #{trial}" in title  # the per-trial figures were redrawn
    ring = browser.execute_script(
        "return document.getElementById('fig-front').data"
        ".find(t => t.name === 'selected trial').customdata[0]"
    )
    assert ring == trial

    browser.find_element("id", "copy-btn").click()
    _wait(browser, "return document.getElementById('copy-note').textContent.length > 0")

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
