"""`MemoryMeter`: this process's peak resident memory, and its CUDA peak where CUDA is used."""

from __future__ import annotations

import importlib
import resource
import sys
from pathlib import Path
from typing import Any

from runtime.meters._readings import MemoryReading, Provenance
from runtime.meters._source import SourceUnavailable, read_text

__all__ = ["MemoryMeter"]


class MemoryMeter:
    """Reads peak memory since the process started.

    Peak RSS is ``VmHWM`` from ``proc_status`` (kB), else ``getrusage``'s ``ru_maxrss``. The
    CUDA figure is ``torch.cuda.max_memory_allocated()`` on the current device: with
    ``cuda=None`` only if torch is already imported and CUDA initialised (a CPU node never
    imports torch for it), ``True`` imports torch, ``False`` never reads it.
    """

    def __init__(
        self, *, proc_status: Path = Path("/proc/self/status"), cuda: bool | None = None
    ) -> None:
        self._proc_status = proc_status
        self._cuda = cuda

    def read(self) -> MemoryReading:
        try:
            rss, source = _vmhwm_bytes(self._proc_status), Provenance.VMHWM
        except SourceUnavailable:
            rss, source = _maxrss_bytes(), Provenance.GETRUSAGE
        return MemoryReading(rss, self._cuda_peak(), source)

    def _cuda_peak(self) -> int | None:
        if self._cuda is False:
            return None
        torch: Any = sys.modules.get("torch")
        if torch is None and self._cuda:
            torch = importlib.import_module("torch")
        try:
            if torch is None or not torch.cuda.is_available():
                return None
            if self._cuda is None and not torch.cuda.is_initialized():
                return None
            return int(torch.cuda.max_memory_allocated())
        except RuntimeError:  # a broken driver: report no CUDA figure rather than fail
            return None


def _vmhwm_bytes(path: Path) -> int:
    for line in read_text(path).splitlines():
        key, _, value = line.partition(":")
        if key == "VmHWM":
            parts = value.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1] == "kB":
                return int(parts[0]) * 1024
            break
    raise SourceUnavailable(f"no VmHWM line in kB in {path}")


def _maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, else kB
