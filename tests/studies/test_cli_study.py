"""`dse study list` / `dse study run`: in process with typer's CliRunner, plus one real
subprocess per command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dse._cli_study import parse_models, parse_seeds, study_app
from robustdice_core import InvalidParameterError, RobustDiceError

runner = CliRunner()


def test_list_shows_every_study_and_its_status() -> None:
    result = runner.invoke(study_app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("table1", "fig4", "table2", "table2-trend", "fig3"):
        assert name in result.output
    assert "timeout" in result.output and "not available yet" not in result.output  # fig3
    assert "digits-alexnet" in result.output and "0,1,2" in result.output


def test_parse_options() -> None:
    assert parse_seeds("0, 1,2") == (0, 1, 2)
    assert parse_models(["a,b", "c"]) == ("a", "b", "c")
    for bad in ("x", "1,-1", "", "1.5"):
        with pytest.raises(InvalidParameterError, match="`--seeds` must be whole numbers"):
            parse_seeds(bad)


def test_run_tiny_table2_in_process(tmp_path: Path) -> None:
    result = runner.invoke(
        study_app,
        ["run", "table2", "--model", "digits-vgg-bn", "--out", str(tmp_path), "--jobs", "1"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Robust-SysConf4D" in result.output and "done in" in result.output
    assert (tmp_path / "table2.csv").is_file() and (tmp_path / "table2.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("table9",), "unknown study `table9`; choose one of: fig3, fig4, table1"),
        (("table1", "--seeds", "x"), "`--seeds` must be whole numbers"),
        (("table1", "--model", "alexnet@seed1"), "has no training seeds"),
        (("fig4", "--model", "digits-vgg-bn@seed-1"), "`NAME@seedN`"),
        (("table2", "--jobs", "0"), "`--jobs` must be at least 1"),
    ],
)
def test_run_refuses_bad_input(args: tuple[str, ...], message: str) -> None:
    """The error reaches `dse`'s entry point, which prints it as one line with exit 2."""
    result = runner.invoke(study_app, ["run", *args])
    assert isinstance(result.exception, RobustDiceError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def _dse(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dse.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_subprocess_list() -> None:
    done = _dse("study", "list")
    assert done.returncode == 0 and "table1" in done.stdout


def test_subprocess_bad_fig3_input_exits_non_zero_in_one_line() -> None:
    done = _dse("study", "run", "fig3", "--model", "digits-vgg-bn@seedx")
    assert done.returncode == 2, done.stderr
    assert "`NAME@seedN`" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
