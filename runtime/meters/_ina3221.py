"""Jetson INA3221 power monitors, in both of their sysfs layouts.

- JetPack 4 and earlier (L4T <= 32), NVIDIA's ``ina3221x`` IIO driver:
  ``sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<k>/rail_name_<n>`` names the rail and
  ``in_power<n>_input`` is its power in mW (beside ``in_voltage<n>_input`` mV and
  ``in_current<n>_input`` mA). Very old L4T names the folder ``iio_device``.
- JetPack 5 and later (L4T >= 34), the mainline hwmon driver (kernel
  ``Documentation/hwmon/ina3221.rst``):
  ``sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon<k>/in<n>_label`` names channel n,
  ``in<n>_input`` is its bus voltage in mV and ``curr<n>_input`` its current in mA; power is
  their product. Unconnected channels are labelled ``NC`` (Orin); ``in7_label`` is the "sum of
  shunt voltages" channel, which has no ``curr7_input`` and so is not a rail.

Layouts as read by jetson-stats (``jtop/core/power.py``: both layouts, the NC and in7 rules,
and the VDD_IN / POM_5V_IN total rails, citing NVIDIA's forum threads 73608 and 217088) and the
kernel documentation above; see docs/runtime.md "Meters".

Rail selection (`select_rails`), in order:
1. the rails the caller names, if any (all must exist);
2. else the module's total input rail, ``VDD_IN`` (TX2, Xavier NX, Orin) or ``POM_5V_IN``
   (Nano, TX1), alone: the other rails are branches of it, so summing would count twice;
3. else (Xavier AGX on JetPack 4 has no total rail) the sum of the compute rails, those whose
   name has a ``GPU``, ``CPU``, ``SOC`` or ``CV`` token (``VDD_CPU_GPU_CV`` counts once);
4. else the source is unavailable: rails of unknown meaning are not summed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.meters._readings import Provenance
from runtime.meters._source import (
    PowerSource,
    ProbeContext,
    SourceUnavailable,
    read_number,
    read_text,
)

__all__ = ["COMPUTE_TOKENS", "TOTAL_RAILS", "Ina3221Source", "Rail", "find_rails", "select_rails"]

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
COMPUTE_TOKENS = frozenset({"GPU", "CPU", "SOC", "CV"})


@dataclass(frozen=True)
class Rail:
    """One monitored rail: its power in mW, or its voltage (mV) and current (mA)."""

    name: str
    power_mw: Path | None = None
    voltage_mv: Path | None = None
    current_ma: Path | None = None

    def watts(self) -> float:
        if self.power_mw is not None:
            return read_number(self.power_mw) / 1e3
        if self.voltage_mv is None or self.current_ma is None:
            raise SourceUnavailable(f"rail {self.name} has neither power nor voltage and current")
        return read_number(self.voltage_mv) * read_number(self.current_ma) / 1e6


def _iio_rails(root: Path) -> list[Rail]:
    """JetPack 4: ``rail_name_<n>`` + ``in_power<n>_input`` (mW)."""
    rails = []
    pattern = "sys/bus/i2c/drivers/ina3221x/*/iio[:_]device*/rail_name_*"
    for label in sorted(root.glob(pattern)):
        channel = label.name.removeprefix("rail_name_")
        rails.append(Rail(read_text(label), power_mw=label.with_name(f"in_power{channel}_input")))
    return rails


def _hwmon_rails(root: Path) -> list[Rail]:
    """JetPack 5+: ``in<n>_label`` + ``in<n>_input`` (mV) and ``curr<n>_input`` (mA)."""
    rails = []
    for label in sorted(root.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label")):
        channel = label.name.removeprefix("in").removesuffix("_label")
        current = label.with_name(f"curr{channel}_input")
        name = read_text(label)
        if name.upper() == "NC" or not current.exists():
            continue
        rails.append(
            Rail(name, voltage_mv=label.with_name(f"in{channel}_input"), current_ma=current)
        )
    return rails


_LAYOUTS: tuple[Callable[[Path], list[Rail]], ...] = (_iio_rails, _hwmon_rails)


def find_rails(root: Path) -> tuple[list[Rail], list[str]]:
    """Every labelled rail under ``root`` in either layout, and notes on what was skipped."""
    rails: dict[str, Rail] = {}
    notes = []
    for layout in _LAYOUTS:
        try:
            found = layout(root)
        except SourceUnavailable as err:  # an unreadable label hides that whole layout
            notes.append(str(err))
            continue
        for rail in found:
            if rail.name in rails:
                notes.append(f"rail {rail.name} appears twice; kept the first")
            else:
                rails[rail.name] = rail
    return list(rails.values()), notes


def select_rails(names: Sequence[str], requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The rails to measure, by the rule in the module docstring."""
    available = ", ".join(names) or "none"
    if requested:
        missing = [r for r in requested if r not in names]
        if missing:
            raise SourceUnavailable(f"rail(s) {', '.join(missing)} not found; found: {available}")
        return tuple(requested)
    for total in TOTAL_RAILS:
        if total in names:
            return (total,)
    compute = tuple(n for n in names if COMPUTE_TOKENS & set(re.split(r"[_\s]+", n.upper())))
    if compute:
        return compute
    raise SourceUnavailable(
        f"no total-input rail ({', '.join(TOTAL_RAILS)}) and no GPU/CPU/SOC/CV rail among: "
        f"{available}; name the rails with `rails`"
    )


class Ina3221Source(PowerSource):
    """Jetson INA3221 rails: instantaneous power, integrated over time."""

    name = "ina3221"
    provenance = Provenance.INA3221

    def __init__(self, rails: Sequence[Rail]) -> None:
        super().__init__([r.name for r in rails])
        self._rails = tuple(rails)

    @classmethod
    def probe(cls, context: ProbeContext) -> Ina3221Source:
        found, notes = find_rails(context.root)
        if not found:
            detail = f" ({'; '.join(notes)})" if notes else ""
            raise SourceUnavailable(
                f"no INA3221 rails under {context.root / 'sys/bus/i2c'}{detail}"
            )
        chosen = select_rails([r.name for r in found], context.rails)
        source = cls([r for r in found if r.name in chosen])
        source.notes.extend(notes)
        rule = "chosen by the caller" if context.rails else _rule(chosen)
        source.notes.append(f"rails {' + '.join(chosen)} ({rule})")
        return source

    def read(self) -> dict[str, float]:
        return {rail.name: rail.watts() for rail in self._rails}


def _rule(chosen: tuple[str, ...]) -> str:
    if len(chosen) == 1 and chosen[0] in TOTAL_RAILS:
        return "total input of the module"
    return "no total-input rail: sum of the compute rails"
