"""The search space: one value per unit, optionally tied across units (DESIGN 3.3).

What the value is depends on the search method (`SEARCH_METHODS`): RobustDiCE's threshold
(parameters ``t:<group>``, from 0 to the group's one-cluster threshold) or the budgeted
allocator's protected fraction (``f:<group>``, from 0 to 1; docs/per_byte.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from robustdice_core import InvalidParameterError, Partition, Registry, Unit
from robustdice_core.partition import CLUSTERINGS, Budgeted, RobustDiCE

__all__ = [
    "SEARCH_METHODS",
    "TIE_MODES",
    "SearchMethod",
    "SearchablePartitioner",
    "ThresholdSpace",
    "build_space",
    "check_threshold_range",
]

TieKey = Callable[[Unit], str]
TIE_MODES: Registry[TieKey] = Registry("tie mode")


@TIE_MODES.register("none")
def _per_unit(unit: Unit) -> str:
    return f"u{unit.index:03d}"


@TIE_MODES.register("type")
def _per_kind(unit: Unit) -> str:
    return unit.kind


@TIE_MODES.register("stage")
def _per_stage_role(unit: Unit) -> str:
    """Same stage and same role: ``features.1.<i>.block.3`` -> ``features.1/block.3``.

    Deep names (blocks inside stages) tie the same layer of every block of a stage; shallow
    names (``features.3``) tie every unit of the same kind in that top-level module.
    """
    parts = unit.name.split(".")
    if len(parts) >= 4:
        return f"{'.'.join(parts[:2])}/{'.'.join(parts[3:])}"
    return f"{parts[0]}/{unit.kind}"


@dataclass(frozen=True)
class ThresholdSpace:
    """Search parameters (one per tie group) and their ranges on the normalised scale."""

    names: tuple[str, ...]  # parameter names, e.g. "t:features/conv" or "f:features/conv"
    low: tuple[float, ...]
    high: tuple[float, ...]
    unit_param: tuple[int, ...]  # parameter index of every unit

    def thresholds(self, values: Sequence[float]) -> list[float]:
        """Per-unit values (thresholds, or fractions for budgeted) from one per parameter."""
        return [float(values[p]) for p in self.unit_param]

    def to_dict(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "low": list(self.low),
            "high": list(self.high),
            "unit_param": list(self.unit_param),
        }


def check_threshold_range(threshold_range: tuple[float, float]) -> None:
    low, high = threshold_range
    if not 0.0 <= low < high < float("inf"):
        raise InvalidParameterError(
            f"`--threshold-range` must satisfy 0 <= low < high, got {low},{high}."
        )


def build_space(
    units: Sequence[Unit],
    one_cluster: Sequence[float],
    *,
    tie: str = "none",
    threshold_range: tuple[float, float] | None = None,
    prefix: str = "t",
) -> ThresholdSpace:
    """One parameter per tie group; by default ranging over [0, h] with h the largest of the
    group's one-cluster thresholds (`RobustDiCE.one_cluster_thresholds`).

    Thresholds compare strictly (DESIGN 3.3): a unit is one cluster only for t above its
    diameter, so h is the float just above it; larger values add nothing.
    ``threshold_range`` overrides the range for every parameter. ``prefix`` starts every
    parameter name (``t`` for thresholds, ``f`` for budgeted fractions with ``one_cluster``
    all 1).
    """
    key_of = TIE_MODES.get(tie)
    if threshold_range is not None:
        check_threshold_range(threshold_range)
    keys: list[str] = []
    unit_param: list[int] = []
    group_high: dict[str, float] = {}
    for unit, high in zip(units, one_cluster, strict=True):
        key = key_of(unit)
        if key not in group_high:
            keys.append(key)
            group_high[key] = 0.0
        group_high[key] = max(group_high[key], high)
        unit_param.append(keys.index(key))
    if threshold_range is not None:
        lows, highs = [threshold_range[0]] * len(keys), [threshold_range[1]] * len(keys)
    else:
        lows = [0.0] * len(keys)
        highs = [max(group_high[k], 1e-6) for k in keys]
    return ThresholdSpace(
        names=tuple(f"{prefix}:{k}" for k in keys),
        low=tuple(lows),
        high=tuple(highs),
        unit_param=tuple(unit_param),
    )


class SearchablePartitioner(Protocol):
    """A partitioner with one searched value per unit."""

    def partition_for(self, values: Sequence[float], num_devices: int, /) -> Partition: ...


@dataclass(frozen=True)
class SearchMethod:
    """How `dse optimize` searches one method: its per-unit parameter and its partitioner.

    Attributes:
        prefix: parameter names are ``<prefix>:<tie group>``.
        make: ``(points, clustering, copies) -> (partitioner, per-unit upper end of the
            parameter's range)``, over normalised scores.
        uses_threshold_range: `--threshold-range` applies to its parameters.
    """

    prefix: str
    make: Callable[[Sequence[np.ndarray], str, int], tuple[SearchablePartitioner, list[float]]]
    uses_threshold_range: bool


def _robustdice(
    points: Sequence[np.ndarray], clustering: str, copies: int
) -> tuple[SearchablePartitioner, list[float]]:
    partitioner = RobustDiCE(points, clustering=CLUSTERINGS.get(clustering)())
    return partitioner, partitioner.one_cluster_thresholds


def _budgeted(
    points: Sequence[np.ndarray], clustering: str, copies: int
) -> tuple[SearchablePartitioner, list[float]]:
    return Budgeted(points, copies=copies), [1.0] * len(points)


SEARCH_METHODS: Registry[SearchMethod] = Registry("search method")
SEARCH_METHODS.add("robustdice", SearchMethod("t", _robustdice, uses_threshold_range=True))
SEARCH_METHODS.add("budgeted", SearchMethod("f", _budgeted, uses_threshold_range=False))
