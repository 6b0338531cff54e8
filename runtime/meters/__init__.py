"""The runtime's meters: wall time, FPS, peak memory and energy, each labelled with its source.

- `EnergyMeter.best_available(root)`: Jetson INA3221 rails, else NVML, else RAPL, else the cost
  model's estimate per image; ``start()`` / ``stop(images) -> EnergyReading``.
- `MemoryMeter().read() -> MemoryReading`: peak RSS and, where CUDA ran, the CUDA peak.
- `NodeMeters`: both, plus wall time and FPS, as one `MeterReport` for a node's JSON report.

Sources are plug-ins (`EnergySource`: probe, read) in `ENERGY_SOURCES`, tried in
`SOURCE_ORDER`. See docs/runtime.md, "Meters".
"""

from __future__ import annotations

from runtime.meters._energy import ENERGY_SOURCES, SOURCE_ORDER, EnergyMeter
from runtime.meters._ina3221 import Ina3221Source, find_rails, select_rails
from runtime.meters._memory import MemoryMeter
from runtime.meters._node_meters import NodeMeters
from runtime.meters._nvml import NvmlPowerSource, NvmlSource
from runtime.meters._rapl import RaplSource
from runtime.meters._readings import EnergyReading, MemoryReading, MeterReport, Provenance
from runtime.meters._source import (
    CounterSource,
    EnergySource,
    PowerSource,
    ProbeContext,
    SourceUnavailable,
)

__all__ = [
    "ENERGY_SOURCES",
    "SOURCE_ORDER",
    "CounterSource",
    "EnergyMeter",
    "EnergyReading",
    "EnergySource",
    "Ina3221Source",
    "MemoryMeter",
    "MemoryReading",
    "MeterReport",
    "NodeMeters",
    "NvmlPowerSource",
    "NvmlSource",
    "PowerSource",
    "ProbeContext",
    "Provenance",
    "RaplSource",
    "SourceUnavailable",
    "find_rails",
    "select_rails",
]
