"""The search space: one value per unit, optionally tied across units (DESIGN 3.3).

What the value is depends on the search method (`SEARCH_METHODS`): RobustDiCE's threshold
(parameters ``t:<group>``, from 0 to the group's one-cluster threshold) or the budgeted
allocator's protected fraction (``f:<group>``, from 0 to 1) or the graded allocator's level
(``g:<group>``, from 0 = LOP to 1 = full replication; docs/per_byte.md). A study may
mix methods (`METHOD_CHOICES`, `SearchSpace`); thresholds may be searched on another scale
(`dse._scales`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dse._scales import DEFAULT_SCALE, THRESHOLD_SCALES
from robustdice_core import InvalidParameterError, Partition, Registry, Unit
from robustdice_core.partition import CLUSTERINGS, Budgeted, Graded, RobustDiCE

__all__ = [
    "METHOD_CHOICES",
    "SEARCH_METHODS",
    "SWITCH",
    "TIE_MODES",
    "MethodOptions",
    "MethodSpace",
    "SearchMethod",
    "SearchSpace",
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
class MethodOptions:
    """What a search method's partitioner is built with (from `StudySettings`)."""

    clustering: str = "dendrogram"
    copies: int = 2  # budgeted: copies of a protected neuron
    threshold_scale: str = DEFAULT_SCALE  # robustdice: a `THRESHOLD_SCALES` key


@dataclass(frozen=True)
class SearchMethod:
    """How `dse optimize` searches one method: its per-unit parameter and its partitioner.

    Attributes:
        prefix: parameter names are ``<prefix>:<tie group>``.
        make: ``(points, options) -> (partitioner, per-unit upper end of the parameter's
            range)``, over normalised scores.
        uses_threshold_range: its parameters are thresholds: `--threshold-range` and
            `--threshold-scale` apply to them.
    """

    prefix: str
    make: Callable[
        [Sequence[np.ndarray], MethodOptions], tuple[SearchablePartitioner, list[float]]
    ]
    uses_threshold_range: bool


def _robustdice(
    points: Sequence[np.ndarray], options: MethodOptions
) -> tuple[SearchablePartitioner, list[float]]:
    partitioner = RobustDiCE(points, clustering=CLUSTERINGS.get(options.clustering)())
    return THRESHOLD_SCALES.get(options.threshold_scale)(partitioner, points)


def _budgeted(
    points: Sequence[np.ndarray], options: MethodOptions
) -> tuple[SearchablePartitioner, list[float]]:
    return Budgeted(points, copies=options.copies), [1.0] * len(points)


def _graded(
    points: Sequence[np.ndarray], _options: MethodOptions
) -> tuple[SearchablePartitioner, list[float]]:
    return Graded(points), [1.0] * len(points)


SEARCH_METHODS: Registry[SearchMethod] = Registry("search method")
SEARCH_METHODS.add("robustdice", SearchMethod("t", _robustdice, uses_threshold_range=True))
SEARCH_METHODS.add("budgeted", SearchMethod("f", _budgeted, uses_threshold_range=False))
SEARCH_METHODS.add("graded", SearchMethod("g", _graded, uses_threshold_range=False))

# `--method`: the search methods a study's trials may use. With more than one, every trial
# also draws `SWITCH` (`SearchSpace`).
METHOD_CHOICES: Registry[tuple[str, ...]] = Registry("search method")
METHOD_CHOICES.add("robustdice", ("robustdice",))
METHOD_CHOICES.add("budgeted", ("budgeted",))
METHOD_CHOICES.add("graded", ("graded",))
METHOD_CHOICES.add("both", ("robustdice", "budgeted"))

SWITCH = "m:method"  # the parameter that picks a trial's method in a mixed study


@dataclass(frozen=True)
class MethodSpace:
    """One search method of a study: its name, parameters and partitioner."""

    name: str  # a `SEARCH_METHODS` key
    space: ThresholdSpace
    partitioner: SearchablePartitioner

    def partition_for(self, params: Mapping[str, float], num_devices: int) -> Partition:
        values = [float(params[n]) for n in self.space.names]
        return self.partitioner.partition_for(self.space.thresholds(values), num_devices)


@dataclass(frozen=True)
class SearchSpace:
    """Every parameter of a study; with several methods, the float `SWITCH` in [0, 1] picks
    each trial's method (method i of M owns [i / M, (i + 1) / M)) and every method's
    parameters are drawn in every trial.

    A float rather than a categorical with conditional parameters: the space stays fixed, so
    every sampler models all of it (GP and multivariate TPE would sample parameters outside
    the intersection of the trials' spaces independently at random; pymoo has a fixed float
    vector only). The parameters of the method a trial does not use are inert.
    """

    methods: tuple[MethodSpace, ...]

    @property
    def switched(self) -> bool:
        return len(self.methods) > 1

    @property
    def names(self) -> tuple[str, ...]:
        switch = (SWITCH,) if self.switched else ()
        return switch + tuple(n for m in self.methods for n in m.space.names)

    @property
    def low(self) -> tuple[float, ...]:
        switch = (0.0,) if self.switched else ()
        return switch + tuple(v for m in self.methods for v in m.space.low)

    @property
    def high(self) -> tuple[float, ...]:
        switch = (1.0,) if self.switched else ()
        return switch + tuple(v for m in self.methods for v in m.space.high)

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {n: (lo, hi) for n, lo, hi in zip(self.names, self.low, self.high, strict=True)}

    def method_of(self, params: Mapping[str, float]) -> MethodSpace:
        """The method a trial with these parameters runs."""
        if not self.switched:
            return self.methods[0]
        count = len(self.methods)
        return self.methods[min(max(int(float(params[SWITCH]) * count), 0), count - 1)]

    def switch_value(self, method: str) -> float:
        """The middle of ``method``'s share of the switch."""
        index = [m.name for m in self.methods].index(method)
        return (index + 0.5) / len(self.methods)

    def missing(self, params: Mapping[str, float]) -> list[str]:
        """The parameters a trial needs and ``params`` lacks."""
        return [n for n in self.names if n not in params]

    def partition_for(self, params: Mapping[str, float], num_devices: int) -> Partition:
        """The partition of a trial with these parameters (its method's)."""
        return self.method_of(params).partition_for(params, num_devices)

    def extremes(self) -> list[dict[str, float]]:
        """Per method, every parameter at its lowest and at its highest (the other methods'
        at their lowest): the ends of every method's trade-off."""
        base = dict(zip(self.names, self.low, strict=True))
        points = []
        for method in self.methods:
            for ends in (method.space.low, method.space.high):
                point = {**base, **dict(zip(method.space.names, ends, strict=True))}
                if self.switched:
                    point[SWITCH] = self.switch_value(method.name)
                points.append(point)
        return points

    def to_dict(self) -> dict[str, object]:
        """A single method's `ThresholdSpace.to_dict` (as stored before mixed studies); mixed:
        every parameter, the first method's ``unit_param`` into them, and each method's own."""
        first = self.methods[0].space.to_dict()
        if not self.switched:
            return first
        offset = 1  # the switch comes first
        return {
            "names": list(self.names),
            "low": list(self.low),
            "high": list(self.high),
            "unit_param": [p + offset for p in self.methods[0].space.unit_param],
            "methods": {m.name: m.space.to_dict() for m in self.methods},
        }
