"""Pareto front and hypervolume in a normalised minimisation space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV

__all__ = ["ReferenceBox", "pareto_mask", "hypervolume"]


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
