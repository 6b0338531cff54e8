"""`--pick` rules and `dse pareto` on a stored study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, create_trial
from typer.testing import CliRunner

from dse import PICK_RULES, ReferenceBox, StudySettings, pick_trial, prepare_study, run_study
from dse.cli import app
from robustdice_core import InvalidParameterError

OBJECTIVES = ("acc", "mem", "energy")
BOX = ReferenceBox(ideal=(100.0, 1.0, 1.0), nadir=(0.0, 5.0, 5.0), maximize=(True, False, False))


def _front(*values: tuple[float, float, float]) -> list[FrozenTrial]:
    trials = []
    for number, v in enumerate(values):
        trial = create_trial(
            values=list(v), params={"t": 0.1}, distributions={"t": FloatDistribution(0, 1)}
        )
        trial.number = number
        trials.append(trial)
    return trials


FRONT = _front((99.0, 4.0, 2.0), (90.0, 2.0, 3.0), (60.0, 1.0, 4.5), (99.0, 3.0, 2.5))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("max-acc", 3), ("min-mem", 2), ("min-energy", 0), ("knee", 1)],
)
def test_rules_pick_the_documented_trial(rule: str, expected: int) -> None:
    assert pick_trial(FRONT, OBJECTIVES, BOX, rule).number == expected


def test_ties_go_to_the_point_nearer_the_ideal_then_the_lower_number() -> None:
    tied = _front((99.0, 4.0, 2.0), (99.0, 3.0, 2.0), (99.0, 3.0, 2.0))
    assert pick_trial(tied, OBJECTIVES, BOX, "max-acc").number == 1


def test_rules_needing_a_missing_objective_or_an_empty_front_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="needs the `fps` objective"):
        pick_trial(FRONT, OBJECTIVES, BOX, "max-fps")
    with pytest.raises(InvalidParameterError, match="no feasible completed trial"):
        pick_trial([], OBJECTIVES, BOX, "knee")
    assert set(PICK_RULES.names()) == {"knee", "max-acc", "min-mem", "min-energy", "max-fps"}


def test_pareto_reads_the_study_back_without_the_model(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.log")
    settings = StudySettings(objectives=("mem", "energy"), test_size=50)
    with prepare_study(settings, storage_url=storage, study_name="p") as prepared:
        result = run_study(prepared, trials=5)
    runner = CliRunner()
    shown = runner.invoke(app, ["pareto", "--storage", storage, "--pick", "min-mem", "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["study"] == "p" and payload["trials"] == 5
    assert [r["trial"] for r in payload["front"]] == [t.number for t in result.front]
    assert set(payload["baselines"]) == {"lop", "cdc", "replication"}
    best = min(result.front, key=lambda t: t.values[0])
    assert payload["pick"] == {"rule": "min-mem", "trial": best.number}
    table = runner.invoke(app, ["pareto", "p", "--storage", storage, "--pick", "knee"])
    assert table.exit_code == 0 and "Full replication" in table.stdout
    assert table.stdout.strip().splitlines()[-1].startswith("knee: trial ")
