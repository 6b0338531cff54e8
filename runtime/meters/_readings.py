"""What the meters report: plain, frozen records with JSON round trips."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from robustdice_core._errors import CorruptFileError

__all__ = ["EnergyReading", "MemoryReading", "MeterReport", "Provenance"]


class Provenance(StrEnum):
    """Where a figure came from; every reading carries one."""

    INA3221 = "measured:ina3221"
    NVML = "measured:nvml"
    RAPL = "measured:rapl"
    COST_MODEL = "estimated:cost-model"
    UNAVAILABLE = "unavailable"  # nothing measured and no estimate given
    VMHWM = "measured:vmhwm"  # /proc/self/status
    GETRUSAGE = "measured:getrusage"


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one start/stop window.

    ``joules`` is the window's total (``None`` when nothing measured it and no estimate was
    given); ``rails`` splits it by rail, RAPL domain or GPU; ``notes`` says why better sources
    were passed over and what went wrong on the way (skipped samples, wrap-arounds).
    """

    joules: float | None
    seconds: float
    source: Provenance
    rails: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    images: int | None = None

    @property
    def joules_per_image(self) -> float | None:
        if self.joules is None or not self.images:
            return None
        return self.joules / self.images

    @property
    def watts(self) -> float | None:
        """Mean power over the window."""
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "seconds": self.seconds,
            "source": self.source.value,
            "rails": dict(self.rails),
            "notes": list(self.notes),
            "images": self.images,
            "joules_per_image": self.joules_per_image,
            "watts": self.watts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyReading:
        try:
            return cls(
                joules=None if data["joules"] is None else float(data["joules"]),
                seconds=float(data["seconds"]),
                source=Provenance(data["source"]),
                rails={str(k): float(v) for k, v in data.get("rails", {}).items()},
                notes=tuple(str(n) for n in data.get("notes", ())),
                images=None if data.get("images") is None else int(data["images"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(f"energy reading is malformed ({err!r}): {data!r}") from err


@dataclass(frozen=True)
class MemoryReading:
    """Peak memory of this process: resident set size, and CUDA allocations where CUDA ran."""

    peak_rss_bytes: int
    cuda_peak_bytes: int | None
    source: Provenance

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_rss_bytes": self.peak_rss_bytes,
            "cuda_peak_bytes": self.cuda_peak_bytes,
            "source": self.source.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryReading:
        try:
            cuda = data["cuda_peak_bytes"]
            return cls(
                peak_rss_bytes=int(data["peak_rss_bytes"]),
                cuda_peak_bytes=None if cuda is None else int(cuda),
                source=Provenance(data["source"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(f"memory reading is malformed ({err!r}): {data!r}") from err


@dataclass(frozen=True)
class MeterReport:
    """One node's meters over its serving window: wall time, FPS, energy, peak memory."""

    wall_s: float
    images: int
    energy: EnergyReading
    memory: MemoryReading

    @property
    def fps(self) -> float | None:
        return self.images / self.wall_s if self.wall_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "images": self.images,
            "fps": self.fps,
            "energy": self.energy.to_dict(),
            "memory": self.memory.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeterReport:
        try:
            wall_s, images = float(data["wall_s"]), int(data["images"])
            energy, memory = data["energy"], data["memory"]
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(f"meter report is malformed ({err!r}): {data!r}") from err
        if not math.isfinite(wall_s) or wall_s < 0 or images < 0:
            raise CorruptFileError(f"meter report has a negative or non-finite figure: {data!r}")
        return cls(
            wall_s, images, EnergyReading.from_dict(energy), MemoryReading.from_dict(memory)
        )
