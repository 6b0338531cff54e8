"""`NodeMeters`: what a node measures over its serving window, in one object."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from robustdice_core._errors import InvalidParameterError
from runtime.meters._energy import SOURCE_ORDER, EnergyMeter
from runtime.meters._memory import MemoryMeter
from runtime.meters._readings import MeterReport

__all__ = ["NodeMeters"]


class NodeMeters:
    """Wall time, FPS, energy and peak memory between ``start()`` and ``stop(images)``."""

    def __init__(
        self,
        energy: EnergyMeter,
        memory: MemoryMeter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.energy = energy
        self.memory = memory or MemoryMeter()
        self._clock = clock
        self._started: float | None = None

    @classmethod
    def best_available(
        cls,
        root: Path = Path("/"),
        *,
        estimate_j_per_image: float | None = None,
        order: Sequence[str] = SOURCE_ORDER,
        rails: Sequence[str] | None = None,
        interval_s: float | None = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> NodeMeters:
        energy = EnergyMeter.best_available(
            root,
            estimate_j_per_image=estimate_j_per_image,
            order=order,
            rails=rails,
            interval_s=interval_s,
            clock=clock,
        )
        return cls(energy, clock=clock)

    def start(self) -> None:
        self._started = self._clock()
        self.energy.start()

    def stop(self, images: int) -> MeterReport:
        if self._started is None:
            raise InvalidParameterError("`stop` called before `start`.")
        energy = self.energy.stop(images)
        return MeterReport(self._clock() - self._started, images, energy, self.memory.read())
