"""The study kinds: for each spec type, how to compute it and how to draw it.

Compute, then render (CONVENTIONS): ``compute`` returns plain `StudyData` that tests check
directly; ``figures`` turns it into plotly figures and stays thin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pandas as pd
import plotly.graph_objects as go

from robustdice_core import Registry
from studies._plan import ModelRun
from studies._result import StudyData
from studies._spec import StudySpec

__all__ = ["KINDS", "Preparation", "Progress", "StudyKind", "quiet"]

S = TypeVar("S", bound=StudySpec)
Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """A progress sink that shows nothing."""


def _always_available(spec: Any) -> str | None:
    return None


def _with_data(run: ModelRun) -> bool:
    return True


def _nothing_ahead(spec: Any) -> Preparation | None:
    return None


@dataclass(frozen=True)
class Preparation:
    """What a study's models need before it evaluates them (trained weights and these
    scores, in the cache), so several can be prepared at once (`studies._prepare`)."""

    scores: tuple[str, ...]
    need_accuracy: Callable[[ModelRun], bool] = _with_data


@dataclass(frozen=True)
class StudyKind(Generic[S]):
    """How one kind of spec runs.

    Attributes:
        compute: the runs' numbers, findings and provenance.
        figures: the page's plotly figures from the computed data.
        headline: a small frame for the terminal (what matters, a few rows).
        preparation: what to train and score ahead (None: nothing).
        unavailable: None when the study can run, else what it still needs.
    """

    compute: Callable[[S, Sequence[ModelRun], Progress], StudyData]
    figures: Callable[[S, StudyData], list[go.Figure]]
    headline: Callable[[StudyData], pd.DataFrame]
    preparation: Callable[[S], Preparation | None] = _nothing_ahead
    unavailable: Callable[[S], str | None] = _always_available


KINDS: Registry[StudyKind[Any]] = Registry("study kind")
