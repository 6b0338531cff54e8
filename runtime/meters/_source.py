"""The extension point for energy sources, and the two ways a source turns readings into joules.

A source either reports instantaneous power (`PowerSource`: integrated over time with the
trapezoid rule between samples) or a cumulative energy counter (`CounterSource`: deltas between
samples, with the counter's wrap-around). Both are driven the same way: ``start(now)``, any
number of ``sample(now)``, ``stop(now)``; the meter calls them with its own clock.

A read that fails raises `SourceUnavailable`. At ``start`` and ``stop`` that drops the source (the
meter falls back to the next one); in ``sample`` the sample is skipped and counted, and the next
good sample bridges the gap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runtime.meters._readings import Provenance

__all__ = [
    "CounterSource",
    "EnergySource",
    "PowerSource",
    "ProbeContext",
    "SourceUnavailable",
    "read_number",
    "read_text",
]


class SourceUnavailable(Exception):
    """A source cannot measure here; the message says why (it becomes a reading's note)."""


@dataclass(frozen=True)
class ProbeContext:
    """What a source may look at when it probes: the filesystem root and the caller's choices."""

    root: Path = Path("/")
    rails: tuple[str, ...] | None = None  # INA3221 rails named by the caller


def read_text(path: Path) -> str:
    """A sysfs attribute's text, stripped; any OS error becomes `SourceUnavailable`."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = "permission denied" if isinstance(err, PermissionError) else type(err).__name__
        raise SourceUnavailable(f"cannot read {path} ({reason})") from err


def read_number(path: Path) -> float:
    """A sysfs attribute as a number; unreadable or garbage content -> `SourceUnavailable`."""
    text = read_text(path)
    try:
        # Some drivers append a unit ("32760 ma"); the number comes first.
        return float(text.split()[0])
    except (IndexError, ValueError) as err:
        raise SourceUnavailable(f"{path} holds {text[:40]!r}, not a number") from err


class EnergySource(ABC):
    """One place energy can be read from. Subclasses probe, read, and say how to accumulate."""

    name: ClassVar[str]  # registry key
    provenance: ClassVar[Provenance]

    def __init__(self, rails: Sequence[str]) -> None:
        self.rails = tuple(rails)
        self.notes: list[str] = []
        self._joules = dict.fromkeys(self.rails, 0.0)
        self._last: tuple[float, dict[str, float]] | None = None
        self._skipped = 0
        self._first_error = self._last_error = ""

    @classmethod
    @abstractmethod
    def probe(cls, context: ProbeContext) -> EnergySource:
        """An instance ready to start, or `SourceUnavailable` saying why not."""

    @abstractmethod
    def read(self) -> dict[str, float]:
        """One reading per rail (watts, or the counter in joules)."""

    @abstractmethod
    def _between(
        self, before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]
    ) -> dict[str, float]:
        """Joules per rail between two good ``(time, readings)`` samples."""

    def start(self, now: float) -> None:
        self._last = (now, self.read())

    def sample(self, now: float) -> bool:
        """Take one sample; ``False`` (and the failure counted) if it could not be read."""
        if self._last is None:
            return False
        try:
            values = self.read()
            energy = self._between(self._last, (now, values))
        except SourceUnavailable as err:
            self._skipped += 1
            self._last_error = str(err)
            self._first_error = self._first_error or self._last_error
            return False
        for rail, joules in energy.items():
            self._joules[rail] += joules
        self._last = (now, values)
        return True

    def stop(self, now: float) -> dict[str, float]:
        """Joules per rail since ``start``; `SourceUnavailable` if the final read fails."""
        if self._last is None:
            raise SourceUnavailable("stopped before it was started")
        if not self.sample(now):
            raise SourceUnavailable(f"the final reading failed: {self._last_error}")
        if self._skipped:
            self.notes.append(
                f"{self._skipped} sample(s) failed and were bridged by the next good one "
                f"(first: {self._first_error})"
            )
        return dict(self._joules)

    def close(self) -> None:
        """Release what ``probe`` acquired (a library handle); reading stops for good."""


class PowerSource(EnergySource):
    """Instantaneous power in watts, integrated with the trapezoid rule between samples."""

    def _between(
        self, before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]
    ) -> dict[str, float]:
        (t0, p0), (t1, p1) = before, after
        return {rail: 0.5 * (p0[rail] + p1[rail]) * (t1 - t0) for rail in self.rails}


class CounterSource(EnergySource):
    """A cumulative energy counter in joules; deltas between samples, wrap-around undone.

    A counter that wraps more than once between two samples cannot be told from one that wraps
    once, so sample at least once per wrap period (minutes to hours for RAPL).
    """

    def wrap_joules(self, rail: str) -> float | None:
        """The value at which ``rail``'s counter wraps to zero, or ``None`` if it never does."""
        return None

    def _between(
        self, before: tuple[float, dict[str, float]], after: tuple[float, dict[str, float]]
    ) -> dict[str, float]:
        (_, e0), (_, e1) = before, after
        deltas = {rail: e1[rail] - e0[rail] for rail in self.rails}
        for rail, delta in deltas.items():
            if delta >= 0:
                continue
            wrap = self.wrap_joules(rail)
            if wrap is None:
                raise SourceUnavailable(f"counter {rail} went backwards and does not wrap")
            deltas[rail] = delta + wrap
            self.notes.append(f"counter {rail} wrapped around at {wrap:.6g} J")
        return deltas
