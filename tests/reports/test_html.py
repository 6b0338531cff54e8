"""The page: self-contained, every trial's data embedded safely, sane with no trials."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports import (
    ObjectiveMeta,
    ReportInput,
    initial_trial,
    render_report,
    write_report_html,
)
from reports._style import wrap


def payload(html: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert found is not None
    return dict(json.loads(found.group(1)))


@pytest.fixture(scope="module")
def page(make: Callable[..., ReportInput]) -> str:
    return render_report(make())


def test_page_inlines_plotly_and_fetches_nothing(page: str) -> None:
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count("plotly.js v") >= 1  # the library itself, once
    assert "Plotly.newPlot" in page and "window.robustdiceReport" in page
    assert page.startswith("<!DOCTYPE html>")


def test_page_embeds_each_completed_trial_and_the_initial_pick(page: str) -> None:
    data = payload(page)
    assert data["initial"] == 1
    assert data["front_figures"] == ["fig-front"]  # two objectives: no 3-D, no matrix
    assert set(data["trials"]) == {"0", "1", "2", "3"}
    assert data["trials"]["1"]["summary"]["deploy_command"].endswith("--out bundle-1")
    # NaN (k = 2 is not evaluated) travels as null, which JSON.parse accepts
    assert None in data["trials"]["1"]["figures"]["fig-failures"]["traces"]["0"]["y"]


def test_page_states_provenance_and_notes(page: str) -> None:
    assert "Costs estimated by the cost model" in page
    assert "3 × test_board, test_link, fp32" in page
    assert "measured by simulated device failures on 10 test images" in page
    assert "<li>a note</li>" in page and "acc: worst, k=1" in page


def test_three_objectives_add_the_scatter_matrix(
    make: Callable[..., ReportInput], objectives3: tuple[ObjectiveMeta, ...]
) -> None:
    html = render_report(make(objectives3))
    assert 'id="fig-matrix"' in html
    assert payload(html)["front_figures"] == ["fig-front", "fig-matrix"]


def test_text_cannot_break_out_of_the_page(make: Callable[..., ReportInput]) -> None:
    nasty = "</script><script>alert(1)</script>{js}"
    html = render_report(make(storage=nasty, deploy_command=f"dse deploy --storage '{nasty}'"))
    assert "<script>alert(1)" not in html
    assert payload(html)["trials"]["0"]["summary"]["deploy_command"].endswith(f"'{nasty}'")
    assert "&lt;/script&gt;" in html  # the header shows it, escaped


def test_no_completed_trial_still_renders(make: Callable[..., ReportInput]) -> None:
    data = make(
        trials=pd.DataFrame(columns=["trial", "state", "feasible", "acc", "mem"]),
        default_trial=None,
        hypervolume=pd.DataFrame(),
    )
    assert initial_trial(data) is None
    html = render_report(data)
    assert payload(html) == {"initial": None, "front_figures": ["fig-front"], "trials": {}}
    assert "no completed trial yet" in html


def test_without_a_feasible_trial_the_first_completed_one_is_shown(
    make: Callable[..., ReportInput], trials: pd.DataFrame
) -> None:
    trials["feasible"] = False
    data = make(trials=trials, default_trial=None)
    assert initial_trial(data) == 0
    assert "no feasible trial to pick" in render_report(data)


def test_write_is_atomic_and_creates_the_folder(data: ReportInput, tmp_path: Path) -> None:
    path = write_report_html(data, tmp_path / "a" / "b" / "report.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("a · b · c", 20, ["a · b · c"]),
        ("aaaa · bbbb · cccc", 11, ["aaaa · bbbb", "cccc"]),
        ("one two three · x", 9, ["one two", "three · x"]),
        ("unbreakable_word", 4, ["unbreakable_word"]),
    ],
)
def test_wrap(text: str, width: int, lines: list[str]) -> None:
    assert wrap(text, width) == lines


def test_input_refuses_missing_columns_and_unknown_default(
    make: Callable[..., ReportInput], trials: pd.DataFrame
) -> None:
    with pytest.raises(ValueError, match="`trials` must have the column"):
        make(trials=trials.drop(columns=["mem"]))
    with pytest.raises(ValueError, match="`default_trial` must be a completed trial, got 4"):
        make(default_trial=4)  # failed
    with pytest.raises(ValueError, match="`units` must have the column"):
        make(units=pd.DataFrame({"unit": [0]}))
    with pytest.raises(ValueError, match="at least one objective"):
        make(objectives=())
