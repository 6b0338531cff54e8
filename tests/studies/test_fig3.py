"""Fig. 3 needs the runtime's timeout study: it refuses clearly and makes nothing up."""

from __future__ import annotations

from pathlib import Path

import pytest

from studies import STUDIES, StudyUnavailableError, TimeoutSpec, run_study, study_status


def test_fig3_is_declared_but_unavailable(tmp_path: Path) -> None:
    spec = STUDIES.get("fig3")
    assert isinstance(spec, TimeoutSpec)
    assert spec.timeouts_us[0] == 10 and spec.timeouts_us[-1] == 30000  # the paper's range
    assert study_status(spec) == "needs the runtime's timeout study (issue 11), not available yet"
    with pytest.raises(StudyUnavailableError, match="study `fig3` needs the runtime's timeout"):
        run_study("fig3", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any work or file


def test_the_other_paper_studies_are_ready() -> None:
    ready = [name for name in STUDIES.names() if study_status(STUDIES.get(name)) is None]
    assert ready == ["fig4", "table1", "table2", "table2-measured", "table2-trend"]
