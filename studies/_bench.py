"""Opening a run's workbench, and views of it restricted to a subset of importance scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from dse import Workbench, open_workbench
from robustdice_core.importance import ImportanceScores
from studies._plan import ModelRun
from studies._spec import StudySpec

__all__ = ["open_run", "with_scores"]


def open_run(
    run: ModelRun, spec: StudySpec, scores: Sequence[str], *, need_accuracy: bool = True
) -> Workbench:
    """The run's model with its weights, data (if ``need_accuracy``) and ``scores``."""
    return open_workbench(
        run.name,
        weights=run.weights,
        data=run.data,
        score_names=tuple(scores),
        calibration_size=spec.calibration_size,
        test_size=spec.test_size,
        need_accuracy=need_accuracy,
    )


def with_scores(bench: Workbench, subset: Sequence[str]) -> Workbench:
    """``bench`` seeing only ``subset`` of its computed scores.

    Every method built on the view uses those scores alone, including the budgeted
    allocator, which shares its copies model-wide by raw s3 only when s3 is in the subset.
    """
    names = tuple(subset)
    raw = {name: bench.scores.raw[name] for name in names}
    scores = ImportanceScores(raw, bench.scores.unit_names)
    return replace(bench, scores=scores, score_names=names)
