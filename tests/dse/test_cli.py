"""The `dse` command line: in-process for argument handling, real subprocesses end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from dse import open_storage
from dse.cli import app, main

DSE = [sys.executable, "-m", "dse.cli"]
FAST = ["--test-size", "100"]


def run_dse(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DSE, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dse", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_models_lists_the_registry() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("digits-vgg-bn", "alexnet", "vgg16_bn", "convnext_tiny"):
        assert name in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--model", "resnet9000"], "unknown model `resnet9000`"),
        (["evaluate", "--thresholds", "0.1,x"], "`--thresholds` must be numbers"),
        (["evaluate", "--devices", "1"], "`--devices` must be in 2..64"),
        (["evaluate", "--thresholds", "-0.5"], "must be a finite number >= 0"),
        (["optimize", "--objectives", "acc,speed"], "unknown objective `speed`"),
        (["optimize", "--sampler", "cmaes"], "unknown sampler `cmaes`"),
        (["optimize", "--threshold-range", "0.5,0.1"], "0 <= low < high"),
        (["optimize", "--failures", "4"], "`--failures` values must be in 1..3"),
        (["optimize", "--acc-metric", "median"], "`--acc-metric` must be one of"),
        (["evaluate", "--device", "tpu"], "`--device` must be auto, cpu, cuda or cuda:N"),
        (["evaluate", "--device", "cuda:7"], "`--device cuda:7`: "),
        (["optimize", "--device", "cuda:7"], "`--device cuda:7`: "),
        (["evaluate", "--batch-size", "0"], "`--batch-size` must be at least 1"),
        (["optimize", "--racing", "1.5"], "`--racing` must be a fraction"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert run_main(monkeypatch, *args, *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_missing_weights_and_data_name_the_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    assert run_main(monkeypatch, "evaluate", "--model", "alexnet") == 2
    assert "--weights PATH" in capsys.readouterr().err
    assert run_main(monkeypatch, "evaluate", "--model", "alexnet", "--weights", "nope.pth") == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_prints_the_comparison_table(tmp_path: Path) -> None:
    result = run_dse("evaluate", *FAST, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    for label in ("RobustDiCE", "LOP", "CDC", "Full replication", "k=3 failed"):
        assert label in result.stdout
    payload = json.loads((tmp_path / "r.json").read_text())
    by_method = {r["method"]: r for r in payload["results"]}
    assert set(by_method) == {"robustdice", "lop", "cdc", "replication"}
    assert by_method["replication"]["label"] == "Full replication"
    assert by_method["replication"]["replication_factor"] == 4.0
    lop_worst = by_method["lop"]["by_failed_devices"][1]["worst"]
    assert by_method["robustdice"]["by_failed_devices"][1]["worst"] > lop_worst


def _complete(storage: str, study: str) -> dict[int, tuple[float, ...]]:
    loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
    return {
        t.number: tuple(t.values)
        for t in loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }


def test_optimize_writes_exports_and_resumes_to_the_target(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["optimize", *FAST, "--trials", "8", "--storage", storage, "--out", str(tmp_path)]
    args += ["--study", "s", "--population", "4"]
    first = run_dse(*args)
    assert first.returncode == 0, first.stderr
    assert "Pareto front" in first.stdout and "LOP" in first.stdout
    done = _complete(storage, "s")
    assert len(done) == 8
    frame = pd.read_parquet(tmp_path / "s" / "trials.parquet")
    assert len(frame) == 8 and frame["pareto"].any()
    columns = {"acc", "mem", "energy", "replication_factor", "top1_pct[failed 0]", "memory_mb[d3]"}
    assert columns <= set(frame.columns)
    units = pd.read_csv(tmp_path / "s" / "units.csv")
    assert set(units["param"]) <= set(frame.columns) and units["layer"].is_unique
    assert len(pd.read_csv(tmp_path / "s" / "trials.csv")) == 8
    more = run_dse(*[a if a != "8" else "10" for a in args])
    assert more.returncode == 0, more.stderr
    after = _complete(storage, "s")
    assert len(after) == 10
    assert {n: after[n] for n in done} == done  # nothing completed before was lost or changed


def test_optimize_refuses_changed_settings_and_leaves_the_study_alone(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    base = ["optimize", *FAST, "--storage", storage, "--out", str(tmp_path), "--study", "s"]
    assert run_dse(*base, "--trials", "2", "--population", "4").returncode == 0
    before = _complete(storage, "s")
    changed = run_dse(*base, "--trials", "4", "--population", "4", "--sampler", "random")
    assert changed.returncode == 2
    assert "exists with other settings (sampler)" in changed.stderr
    assert _complete(storage, "s") == before
    infeasible = run_dse(*base[:-1], "fresh", "--trials", "4", "--max-mem-mb", "1")
    assert infeasible.returncode == 2 and "even LOP needs" in infeasible.stderr
    assert "fresh" not in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    bad_storage = run_dse("optimize", *FAST, "--storage", "nosuchdb://x", "--trials", "1")
    assert bad_storage.returncode == 2 and "cannot open study storage" in bad_storage.stderr


@pytest.mark.slow
def test_optimize_resumes_after_kill_9_without_losing_trials(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.log")  # the default kind: an Optuna journal file
    args = ["optimize", *FAST, "--trials", "30", "--storage", storage, "--out", str(tmp_path)]
    args += ["--study", "k", "--population", "6"]
    process = subprocess.Popen([*DSE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    done: dict[int, tuple[float, ...]] = {}
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            done = _complete(storage, "k")
        except KeyError:
            continue  # study not created yet
        if len(done) >= 5:
            break
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = _complete(storage, "k")
    assert len(killed_at) >= 5
    resumed = run_dse(*args)
    assert resumed.returncode == 0, resumed.stderr
    final = _complete(storage, "k")
    assert len(final) == 30
    assert {n: final[n] for n in killed_at} == killed_at


def test_usage_errors_exit_2_through_the_real_entry_point() -> None:
    result = run_dse("optimize", "--trials", "abc")
    assert result.returncode == 2
    assert "Invalid value for '--trials'" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_dse("bogus").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimize", "--failures", ","], "`--failures` must name at least one"),
        (["optimize", "--test-size", "0"], "`--test-size` must be at least 1"),
        (["evaluate", "--devices", "13"], "more than 4096 failure sets"),
        (["evaluate", "-n", "100000"], "`--devices` must be in 2..64"),
        (["evaluate", "-n", "99999999999999999999"], "`--devices` must be in 2..64"),
        (["evaluate", "-n", "0"], "`--devices` must be in 2..64"),
        (["optimize", "-n", "0"], "`--devices` must be in 2..64"),
        (["evaluate", "--json", "/proc/r.json"], "`--json` must be a writable folder"),
        (["evaluate", "--json", "/tmp"], "is a folder"),
        (["optimize", "--out", "/proc/x"], "`--out` must be a writable folder"),
        (["optimize", "--seed", "-1"], "`--seed` must be in 0..4294967295"),
        (["optimize", "--study", "../../escape"], "`--study` must be"),
        (["evaluate", "--clustering", "kmeans"], "unknown clustering `kmeans`"),
        (["evaluate", "--json", "/no/such/dir/r.json"], "does not exist"),
        (["evaluate", "--model", "[bold]x"], "unknown model `[bold]x`"),
    ],
)
def test_more_bad_input(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert run_main(monkeypatch, *args) == 2
    assert message in capsys.readouterr().err


def test_errors_are_short_and_name_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert run_main(monkeypatch, "evaluate", "-n", "5000") == 2
    err = capsys.readouterr().err
    assert len(err) < 200 and "--failures" not in err
    assert time.monotonic() - started < 5, "refused before any work"


def test_ctrl_c_while_loading_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import dse._optimize_view as view

    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(view, "prepare_study", interrupt)
    code = run_main(monkeypatch, "optimize", "--storage", str(tmp_path / "s.log"))
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted while loading") and len(err.splitlines()) == 1


def test_same_failures_in_any_order_or_repeated_are_one_study() -> None:
    from dse import StudySettings

    names = {
        StudySettings.parse(devices=4, failures=text).default_study_name()
        for text in ("1,2", "2,1", "1,1,2")
    }
    assert len(names) == 1


@pytest.mark.slow
def test_ctrl_c_during_trials_keeps_them_and_exits_130(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.log")
    # far more trials than it runs: on a quiet machine 40 could all finish between the
    # check below and the signal, and a finished run rightly exits 0
    args = ["optimize", *FAST, "--trials", "400", "--storage", storage, "--out", str(tmp_path)]
    process = subprocess.Popen(
        [*DSE, *args, "--study", "c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            if len(_complete(storage, "c")) >= 4:
                break
        except KeyError:
            continue
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    saved = len(_complete(storage, "c"))
    assert f"interrupted: {saved} trials saved; rerun the same command to resume." in err
    assert "Traceback" not in err and "Traceback" not in out
    assert "c: trials 0/400" in out, "plain progress lines when stdout is not a terminal"
    assert (tmp_path / "c" / "trials.csv").is_file(), "what was done is exported"
