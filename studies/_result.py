"""What a study computes: its table (the CSV), what it found, and where every number came from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from dse import Workbench

__all__ = ["TIE_POINTS", "Finding", "ModelSource", "StudyData", "Tally", "Verdict", "verdict_of"]

# Top-1 differences up to one point (5 of the 500 digits test images) are noise: a tie.
TIE_POINTS = 1.0


class Verdict(StrEnum):
    """How our numbers relate to one of the paper's trends."""

    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not confirmed"
    MIXED = "mixed"
    OURS_ONLY = "ours only"  # a finding the paper does not state


@dataclass(frozen=True)
class Finding:
    """One trend: what the paper states, what we measured, and the verdict."""

    claim: str
    ours: str
    verdict: Verdict

    def to_dict(self) -> dict[str, str]:
        return {"claim": self.claim, "ours": self.ours, "verdict": self.verdict.value}


def verdict_of(holds: int, cells: int) -> Verdict:
    """CONFIRMED if the trend holds in every cell, NOT_CONFIRMED in none, else MIXED."""
    if cells and holds == cells:
        return Verdict.CONFIRMED
    return Verdict.NOT_CONFIRMED if holds == 0 else Verdict.MIXED


@dataclass(frozen=True)
class Tally:
    """A pairwise comparison over cells; a difference within ``tolerance`` is a tie."""

    wins: int
    ties: int
    losses: int

    @classmethod
    def of(cls, ours: Iterable[float], theirs: Iterable[float], tolerance: float) -> Tally:
        diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
        return cls(
            sum(d > tolerance for d in diffs),
            sum(-tolerance <= d <= tolerance for d in diffs),
            sum(d < -tolerance for d in diffs),
        )

    @property
    def cells(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def verdict(self) -> Verdict:
        """CONFIRMED: never behind and ahead somewhere; NOT_CONFIRMED: never ahead."""
        if self.wins == 0:
            return Verdict.NOT_CONFIRMED
        return Verdict.CONFIRMED if self.losses == 0 else Verdict.MIXED

    def describe(self) -> str:
        return (
            f"ahead in {self.wins} of {self.cells} cells, within the tie margin in "
            f"{self.ties}, behind in {self.losses}"
        )


@dataclass(frozen=True)
class ModelSource:
    """Which model, weights and data one (model, seed) run used."""

    model: str  # registry name, e.g. digits-vgg-bn@seed1
    weights: str  # LoadedModel.weights_source
    data: str  # EvalData.name, or why there was none
    calibration_images: int | None
    test_images: int | None
    scores: tuple[str, ...]

    @classmethod
    def of(cls, bench: Workbench) -> ModelSource:
        data = bench.data
        return cls(
            model=bench.model.spec.name,
            weights=bench.model.weights_source,
            data=data.name if data is not None else "none (architecture only: costs)",
            calibration_images=len(data.calibration) if data is not None else None,
            test_images=len(data.test) if data is not None else None,
            scores=bench.score_names,
        )

    def describe(self) -> str:
        images = ""
        if self.test_images is not None:
            images = f", {self.calibration_images} calibration / {self.test_images} test images"
        return (
            f"{self.model}: weights {self.weights}; data {self.data}{images}; scores "
            f"{'+'.join(self.scores)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "scores": list(self.scores)}


@dataclass(frozen=True)
class StudyData:
    """A study's results, ready to write and render.

    Attributes:
        table: the main CSV: one row per reported cell, the paper's numbers beside ours.
        findings: which of the paper's trends our numbers confirm and which they do not.
        provenance: what is estimated (cost model), measured, or simulated, and with what.
        sources: the model, weights and data of every run.
        details: per (model, seed) rows behind an aggregated table (None if the table is it).
        notes: anything else a reader must know (choices, skipped cells).
    """

    table: pd.DataFrame
    findings: tuple[Finding, ...]
    provenance: tuple[str, ...]
    sources: tuple[ModelSource, ...]
    details: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
