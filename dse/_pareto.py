"""Pareto front and hypervolume in a normalised minimisation space."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from pymoo.indicators.hv import HV

__all__ = ["FrontChange", "ReferenceBox", "front_change", "pareto_mask", "hypervolume"]


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """``[n, m]`` minimisation points -> bool mask of the non-dominated ones."""
    n = points.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    le = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    lt = (points[:, None, :] < points[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)  # dominated[j]: some i dominates j
    return np.logical_not(dominated)


@dataclass(frozen=True)
class ReferenceBox:
    """Maps objective values to [0, 1]-ish minimisation coordinates.

    ``ideal`` maps to 0 and ``nadir`` (the reference point) to 1 for every objective; a
    maximised objective is negated first. Stored with the study so hypervolumes from
    different runs and samplers are comparable.
    """

    ideal: tuple[float, ...]
    nadir: tuple[float, ...]
    maximize: tuple[bool, ...]

    def normalise(self, values: np.ndarray) -> np.ndarray:
        signs = np.where(self.maximize, -1.0, 1.0)
        ideal = signs * np.asarray(self.ideal)
        nadir = signs * np.asarray(self.nadir)
        span = np.where(nadir - ideal == 0, 1.0, nadir - ideal)
        return (signs * np.asarray(values, dtype=float) - ideal) / span

    def to_dict(self) -> dict[str, list[float] | list[bool]]:
        return {
            "ideal": list(self.ideal),
            "nadir": list(self.nadir),
            "maximize": list(self.maximize),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[float]]) -> ReferenceBox:
        return cls(
            tuple(float(v) for v in data["ideal"]),
            tuple(float(v) for v in data["nadir"]),
            tuple(bool(v) for v in data["maximize"]),
        )


def hypervolume(values: np.ndarray, box: ReferenceBox) -> float:
    """Hypervolume of ``[n, m]`` objective values dominated within the unit reference box."""
    if values.size == 0:
        return 0.0
    points = box.normalise(values)
    points = points[(points < 1.0).all(axis=1)]
    if points.size == 0:
        return 0.0
    return float(HV(ref_point=np.ones(points.shape[1]))(points))


class FrontChange(NamedTuple):
    """The front under estimated values and under measured ones (`front_change`)."""

    measured_objectives: tuple[str, ...]  # replaced by their measured values
    estimated_objectives: tuple[str, ...]  # not measured for every candidate: kept
    unmeasured: tuple[int, ...]  # front trials without a measurement
    estimated_front: tuple[int, ...]
    measured_front: tuple[int, ...]  # empty when the comparison cannot be made
    entered: tuple[int, ...]
    left: tuple[int, ...]

    @property
    def comparable(self) -> bool:
        """Every front trial is measured and at least one objective has measured values."""
        return not self.unmeasured and bool(self.measured_objectives)


def front_change(
    numbers: Sequence[int],
    estimated: Sequence[Sequence[float]],
    measured: Sequence[Sequence[float]],
    objectives: Sequence[str],
    maximize: Sequence[bool],
    on_front: Collection[int],
) -> FrontChange:
    """The non-dominated set of the candidates ``numbers`` (the estimated front and any other
    measured feasible trial) when each objective that every candidate has measured (no NaN in
    its ``measured`` column) takes its measured values; the others stay estimated. Without a
    measurement for every front trial nothing is compared."""
    est = np.asarray(estimated, dtype=float).reshape(len(numbers), len(objectives))
    meas = np.asarray(measured, dtype=float).reshape(len(numbers), len(objectives))
    has_any = ~np.isnan(meas).all(axis=1)
    front = tuple(n for n in numbers if n in on_front)
    unmeasured = tuple(
        n for n, ok in zip(numbers, has_any, strict=True) if n in on_front and not ok
    )
    columns = (
        ~np.isnan(meas[has_any]).any(axis=0) if has_any.any() else np.zeros(len(objectives), bool)
    )
    replaced = tuple(o for o, c in zip(objectives, columns, strict=True) if c)
    kept = tuple(o for o, c in zip(objectives, columns, strict=True) if not c)
    if unmeasured or not replaced:
        return FrontChange(replaced, kept, unmeasured, front, (), (), ())
    rows = np.flatnonzero(has_any)
    values = np.where(columns, meas[rows], est[rows])
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    mask = pareto_mask(values * signs)
    new = tuple(int(numbers[int(r)]) for r, m in zip(rows, mask, strict=True) if m)
    entered = tuple(n for n in new if n not in on_front)
    left = tuple(n for n in front if n not in new)
    return FrontChange(replaced, kept, (), front, new, entered, left)
