"""The search space: one threshold per unit, optionally tied across units (DESIGN 3.3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robustdice_core import InvalidParameterError, Registry, Unit

__all__ = ["TIE_MODES", "ThresholdSpace", "build_space", "check_threshold_range"]

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

    names: tuple[str, ...]  # parameter names, e.g. "t:features/conv"
    low: tuple[float, ...]
    high: tuple[float, ...]
    unit_param: tuple[int, ...]  # parameter index of every unit

    def thresholds(self, values: Sequence[float]) -> list[float]:
        """Per-unit thresholds from one value per parameter."""
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
) -> ThresholdSpace:
    """One parameter per tie group; by default ranging over [0, h] with h the largest of the
    group's one-cluster thresholds (`RobustDiCE.one_cluster_thresholds`).

    Thresholds compare strictly (DESIGN 3.3): a unit is one cluster only for t above its
    diameter, so h is the float just above it; larger values add nothing.
    ``threshold_range`` overrides the range for every parameter.
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
        names=tuple(f"t:{k}" for k in keys),
        low=tuple(lows),
        high=tuple(highs),
        unit_param=tuple(unit_param),
    )
