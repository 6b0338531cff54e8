"""Reading the export columns: failure sets, per-device and per-unit figures, display units."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

__all__ = [
    "DisplayUnit",
    "device_values",
    "failure_columns",
    "failure_size",
    "finite",
    "indexed_columns",
    "pick_unit",
    "provenance_of",
    "row_provenance",
    "unit_values",
]

_TOP1 = re.compile(r"top1_pct\[(.+)\]")
NO_FAILURE = "no failure"


def failure_size(label: str) -> int:
    """Number of failed devices in a failure set label: ``"no failure"`` -> 0,
    ``"failed 0"`` -> 1 (device 0 is down), ``"failed 1+3"`` -> 2."""
    if label == NO_FAILURE:
        return 0
    if not label.startswith("failed "):
        raise ValueError(f"failure set label must be 'no failure' or 'failed i+j', got {label!r}")
    return len(label.removeprefix("failed ").split("+"))


def failure_columns(columns: Iterable[object]) -> dict[str, int]:
    """``top1_pct[...]`` column -> number of failed devices, in column order."""
    return dict(_failure_columns(tuple(str(c) for c in columns)))


@lru_cache(maxsize=64)
def _failure_columns(columns: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    matches = ((c, _TOP1.fullmatch(c)) for c in columns)
    return tuple((c, failure_size(m.group(1))) for c, m in matches if m)


def indexed_columns(columns: Iterable[object], figure: str, prefix: str) -> list[str]:
    """``figure[<prefix><i>]`` columns sorted by i: ``memory_mb[d0]``, ``unit_replication[u3]``."""
    return list(_indexed_columns(tuple(str(c) for c in columns), figure, prefix))


@lru_cache(maxsize=256)
def _indexed_columns(columns: tuple[str, ...], figure: str, prefix: str) -> tuple[str, ...]:
    pattern = re.compile(rf"{re.escape(figure)}\[{re.escape(prefix)}(\d+)\]")
    matches = [(int(m.group(1)), c) for c in columns if (m := pattern.fullmatch(c))]
    return tuple(column for _, column in sorted(matches))


def device_values(row: pd.Series, figure: str) -> list[float]:
    """One figure per device from a trial's row (``memory_mb`` -> ``memory_mb[d0]``, ...)."""
    return [_float(row[c]) for c in indexed_columns(row.index, figure, "d")]


def unit_values(row: pd.Series, figure: str = "unit_replication") -> list[float]:
    """One figure per unit from a row (``unit_replication[u0]``, ...)."""
    return [_float(row[c]) for c in indexed_columns(row.index, figure, "u")]


def finite(values: Iterable[float]) -> list[float]:
    """The finite values (no NaN, no infinities)."""
    return [v for v in values if math.isfinite(v)]


def provenance_of(frame: pd.DataFrame) -> str:
    """``estimated``, ``measured``, or both joined by ``and``, from a ``provenance`` column
    (``estimated`` when there is none: the cost model is the default)."""
    if "provenance" not in frame.columns:
        return "estimated"
    kinds = sorted({str(v) for v in frame["provenance"].dropna()})
    return " and ".join(kinds) if kinds else "estimated"


def row_provenance(row: pd.Series) -> str:
    """One record's ``provenance`` (``estimated`` when it has none)."""
    value = row.get("provenance")
    return str(value) if value is not None and pd.notna(value) else "estimated"


@dataclass(frozen=True)
class DisplayUnit:
    """A unit to show values in: ``shown = value / factor`` (``mJ`` from J: factor 1e-3)."""

    symbol: str
    factor: float

    def apply(self, values: Sequence[float]) -> list[float]:
        return [v / self.factor for v in values]


ENERGY_UNITS = (DisplayUnit("J", 1.0), DisplayUnit("mJ", 1e-3), DisplayUnit("µJ", 1e-6))
FLOP_UNITS = (
    DisplayUnit("GFLOP", 1.0),
    DisplayUnit("MFLOP", 1e-3),
    DisplayUnit("kFLOP", 1e-6),
)
MEMORY_UNITS = (DisplayUnit("MB", 1.0), DisplayUnit("KB", 1 / 1024))


def pick_unit(values: Iterable[float], choices: Sequence[DisplayUnit]) -> DisplayUnit:
    """The largest of ``choices`` (largest first) in which the largest value is at least 1."""
    largest = max((abs(v) for v in finite(values)), default=0.0)
    for choice in choices:
        if largest / choice.factor >= 1:
            return choice
    return choices[-1] if largest > 0 else choices[0]


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
