"""Linux RAPL through the powercap framework (x86 CPUs: Intel, and AMD since Linux 5.8).

Every zone is listed flat as ``sys/class/powercap/intel-rapl:<p>[:<sub>]``; its ``name`` is
``package-<p>``, ``core``, ``uncore``, ``dram`` or ``psys``, ``energy_uj`` is a cumulative
counter in microjoules that wraps to zero at ``max_energy_range_uj`` (kernel
``Documentation/power/powercap/powercap.rst``). Since Linux 5.10 ``energy_uj`` is readable by
root only (CVE-2020-8694), so an ordinary user usually gets a "permission denied" note here.

Zones measured: every ``package-*`` and ``dram`` zone. ``core`` and ``uncore`` are parts of their
package (counting them again would double count); ``psys`` covers the whole platform and
overlaps the packages, so it is left out rather than mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.meters._readings import Provenance
from runtime.meters._source import (
    CounterSource,
    ProbeContext,
    SourceUnavailable,
    read_number,
    read_text,
)

__all__ = ["RaplSource", "RaplZone"]

_UJ = 1e-6


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its label in readings, its counter, and where the counter wraps."""

    label: str
    energy_uj: Path
    wrap_j: float


def _measured(name: str) -> bool:
    return name.startswith("package") or name == "dram"


def _zones(root: Path) -> tuple[list[RaplZone], list[str]]:
    named: list[tuple[str, Path]] = []
    notes = []
    for zone in sorted(root.glob("sys/class/powercap/intel-rapl:*")):
        try:
            name = read_text(zone / "name")
        except SourceUnavailable as err:
            notes.append(str(err))
            continue
        if _measured(name):
            named.append((name, zone))
    counts = {name: sum(n == name for n, _ in named) for name, _ in named}
    zones = []
    for name, zone in named:
        # Several sockets each have a "dram" zone: tell them apart by the zone folder.
        label = name if counts[name] == 1 else f"{name}@{zone.name}"
        try:
            wrap = read_number(zone / "max_energy_range_uj") * _UJ
        except SourceUnavailable as err:
            notes.append(f"{label}: {err}; zone skipped (its wrap-around is unknown)")
            continue
        zones.append(RaplZone(label, zone / "energy_uj", wrap))
    return zones, notes


class RaplSource(CounterSource):
    """RAPL package and DRAM energy counters."""

    name = "rapl"
    provenance = Provenance.RAPL

    def __init__(self, zones: Sequence[RaplZone]) -> None:
        super().__init__([z.label for z in zones])
        self._zones = {z.label: z for z in zones}

    @classmethod
    def probe(cls, context: ProbeContext) -> RaplSource:
        zones, notes = _zones(context.root)
        if not zones:
            detail = f" ({'; '.join(notes)})" if notes else ""
            where = context.root / "sys/class/powercap"
            raise SourceUnavailable(f"no RAPL package or dram zone under {where}{detail}")
        source = cls(zones)
        source.notes.extend(notes)
        source.notes.append(f"zones {' + '.join(source.rails)} (CPU packages and DRAM only)")
        return source

    def read(self) -> dict[str, float]:
        return {label: read_number(z.energy_uj) * _UJ for label, z in self._zones.items()}

    def wrap_joules(self, rail: str) -> float | None:
        return self._zones[rail].wrap_j
