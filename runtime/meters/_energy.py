"""`EnergyMeter`: energy over a window from the best source this machine has.

Sources are tried in `SOURCE_ORDER` (INA3221, NVML, RAPL); every one that probes is started,
and at ``stop`` the first that still reads gives the figure, so a source that dies mid-run falls
back to the next instead of losing the window. Last comes the cost model's estimate per image,
passed in by the caller. The notes say why each better source was passed over.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from robustdice_core._errors import InvalidParameterError
from robustdice_core._registry import Registry
from runtime.meters._ina3221 import Ina3221Source
from runtime.meters._nvml import NvmlSource
from runtime.meters._rapl import RaplSource
from runtime.meters._readings import EnergyReading, Provenance
from runtime.meters._source import EnergySource, ProbeContext, SourceUnavailable

__all__ = ["ENERGY_SOURCES", "SOURCE_ORDER", "EnergyMeter"]

ENERGY_SOURCES: Registry[type[EnergySource]] = Registry("energy source")
for _source in (Ina3221Source, NvmlSource, RaplSource):
    ENERGY_SOURCES.add(_source.name, _source)
SOURCE_ORDER: tuple[str, ...] = ("ina3221", "nvml", "rapl")  # best first


class EnergyMeter:
    """Measures energy between ``start()`` and ``stop()``.

    ``interval_s`` is the background sampling period (power sources are integrated between
    samples; counters are read so that a wrap-around is never missed). With ``None`` no thread
    runs and the caller drives `sample` (tests, or a loop that already ticks).
    """

    def __init__(
        self,
        sources: Sequence[EnergySource] = (),
        *,
        estimate_j_per_image: float | None = None,
        interval_s: float | None = 0.05,
        clock: Callable[[], float] = time.monotonic,
        notes: Sequence[str] = (),
    ) -> None:
        if estimate_j_per_image is not None and not (
            math.isfinite(estimate_j_per_image) and estimate_j_per_image >= 0
        ):
            raise InvalidParameterError(
                "`estimate_j_per_image` must be a finite number >= 0 or None, "
                f"got {estimate_j_per_image!r}."
            )
        if interval_s is not None and not interval_s > 0:
            raise InvalidParameterError(f"`interval_s` must be > 0 or None, got {interval_s!r}.")
        self._sources = list(sources)
        self._estimate = estimate_j_per_image
        self._interval = interval_s
        self._clock = clock
        self._notes = list(notes)
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
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
    ) -> EnergyMeter:
        """Probe the sources in ``order`` under ``root``; never raises for a missing source."""
        names = ENERGY_SOURCES.parse_list(order, "order") if order else ()
        context = ProbeContext(root=Path(root), rails=tuple(rails) if rails else None)
        sources, notes = [], []
        for name in names:
            try:
                sources.append(ENERGY_SOURCES.get(name).probe(context))
            except SourceUnavailable as err:
                notes.append(f"{name}: {err}")
        return cls(
            sources,
            estimate_j_per_image=estimate_j_per_image,
            interval_s=interval_s,
            clock=clock,
            notes=notes,
        )

    @property
    def source(self) -> Provenance:
        """What the reading will come from if nothing fails before ``stop``."""
        if self._sources:
            return self._sources[0].provenance
        return Provenance.UNAVAILABLE if self._estimate is None else Provenance.COST_MODEL

    def start(self) -> None:
        if self._started is not None:
            raise InvalidParameterError("this `EnergyMeter` was already started; make a new one.")
        self._started = now = self._clock()
        for source in list(self._sources):
            try:
                source.start(now)
            except SourceUnavailable as err:
                self._drop(source, err)
        if self._interval is not None and self._sources:
            self._thread = threading.Thread(
                target=self._poll, args=(self._interval,), name="energy-meter", daemon=True
            )
            self._thread.start()

    def sample(self) -> None:
        """Take one sample from every running source (the background thread calls this)."""
        with self._lock:
            now = self._clock()
            for source in self._sources:
                source.sample(now)

    def stop(self, images: int | None = None) -> EnergyReading:
        """The window's energy from the best source that still reads; ``images`` served in it."""
        if self._started is None or self._halt.is_set():
            raise InvalidParameterError("`stop` needs a started meter; call `start` once first.")
        if images is not None and images < 0:
            raise InvalidParameterError(f"`images` must be >= 0, got {images}.")
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            now = self._clock()
            seconds = now - self._started
            reading = self._measured(now, seconds, images)
        return reading if reading is not None else self._estimated(seconds, images)

    def _measured(self, now: float, seconds: float, images: int | None) -> EnergyReading | None:
        """Stops every source; the reading of the first one that still reads, if any."""
        reading = None
        for source in self._sources:
            try:
                rails = source.stop(now)
            except SourceUnavailable as err:
                self._notes.append(f"{source.name}: {err}")
                continue
            finally:
                source.close()
            if reading is None:
                notes = (*self._notes, *(f"{source.name}: {n}" for n in source.notes))
                total = sum(rails.values())
                reading = EnergyReading(total, seconds, source.provenance, rails, notes, images)
        self._sources.clear()
        return reading

    def _estimated(self, seconds: float, images: int | None) -> EnergyReading:
        notes = list(self._notes)
        if self._estimate is None:
            notes.append("cost-model: no estimate given")
            return EnergyReading(None, seconds, Provenance.UNAVAILABLE, {}, tuple(notes), images)
        if images is None:
            notes.append("cost-model: the number of images was not given to `stop`")
            return EnergyReading(None, seconds, Provenance.COST_MODEL, {}, tuple(notes), images)
        notes.append(f"cost-model: {self._estimate:.6g} J per image x {images} images")
        joules = self._estimate * images
        return EnergyReading(joules, seconds, Provenance.COST_MODEL, {}, tuple(notes), images)

    def _drop(self, source: EnergySource, err: SourceUnavailable) -> None:
        self._notes.append(f"{source.name}: {err}")
        self._sources.remove(source)
        source.close()

    def _poll(self, interval_s: float) -> None:
        while not self._halt.wait(interval_s):
            self.sample()
