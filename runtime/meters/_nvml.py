"""NVIDIA GPUs through NVML (``pynvml``, used only if it is already installed).

``nvmlDeviceGetTotalEnergyConsumption`` is a per-GPU energy counter in mJ since the driver was
loaded (Volta and newer); where it is not supported, ``nvmlDeviceGetPowerUsage`` (mW) is
sampled and integrated instead. Every GPU on the machine is measured, one rail each (``gpu0``,
``gpu1``, ...), whichever process uses it. Jetsons have no NVML for their integrated GPU; they
are measured by the INA3221 source.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from runtime.meters._readings import Provenance
from runtime.meters._source import (
    CounterSource,
    EnergySource,
    PowerSource,
    ProbeContext,
    SourceUnavailable,
)

__all__ = ["NvmlPowerSource", "NvmlSource"]


class _Gpus:
    """The ``pynvml`` module and a handle per GPU; every call's error becomes a note."""

    def __init__(self) -> None:
        try:
            self.nvml: Any = importlib.import_module("pynvml")
        except ImportError as err:
            raise SourceUnavailable("pynvml is not installed") from err
        self.call("nvmlInit")
        try:
            count = int(self.call("nvmlDeviceGetCount"))
            self.handles = {
                f"gpu{i}": self.call("nvmlDeviceGetHandleByIndex", i) for i in range(count)
            }
        except SourceUnavailable:
            self.close()
            raise
        if not self.handles:
            self.close()
            raise SourceUnavailable("NVML sees no GPU")

    def call(self, function: str, *args: Any) -> Any:
        try:
            return getattr(self.nvml, function)(*args)
        except Exception as err:  # NVMLError and its many subclasses, or a broken binding
            raise SourceUnavailable(f"NVML {function} failed ({err})") from err

    def per_gpu(self, function: str, scale: float) -> dict[str, float]:
        return {rail: float(self.call(function, h)) * scale for rail, h in self.handles.items()}

    def close(self) -> None:
        try:
            self.call("nvmlShutdown")
        except SourceUnavailable:
            pass  # nothing left to release


class NvmlSource(CounterSource):
    """The GPUs' energy counters; probing falls back to `NvmlPowerSource` without them."""

    name = "nvml"
    provenance = Provenance.NVML

    def __init__(self, gpus: _Gpus, rails: Sequence[str]) -> None:
        super().__init__(rails)
        self._gpus = gpus

    @classmethod
    def probe(cls, context: ProbeContext) -> EnergySource:
        gpus = _Gpus()
        source: EnergySource
        try:
            gpus.per_gpu("nvmlDeviceGetTotalEnergyConsumption", 1e-3)
            source = cls(gpus, list(gpus.handles))
            source.notes.append(f"energy counters of {', '.join(gpus.handles)}")
        except SourceUnavailable as no_counter:
            try:
                gpus.per_gpu("nvmlDeviceGetPowerUsage", 1e-3)
            except SourceUnavailable as no_power:
                gpus.close()
                raise SourceUnavailable(f"{no_counter}; {no_power}") from no_power
            source = NvmlPowerSource(gpus, list(gpus.handles))
            source.notes.append(
                f"no energy counter ({no_counter}): power of {', '.join(gpus.handles)} sampled"
            )
        return source

    def read(self) -> dict[str, float]:
        return self._gpus.per_gpu("nvmlDeviceGetTotalEnergyConsumption", 1e-3)

    def close(self) -> None:
        self._gpus.close()


class NvmlPowerSource(PowerSource):
    """The GPUs' power draw, sampled and integrated (GPUs older than Volta)."""

    name = "nvml"
    provenance = Provenance.NVML

    def __init__(self, gpus: _Gpus, rails: Sequence[str]) -> None:
        super().__init__(rails)
        self._gpus = gpus

    @classmethod
    def probe(cls, context: ProbeContext) -> EnergySource:
        return NvmlSource.probe(context)

    def read(self) -> dict[str, float]:
        return self._gpus.per_gpu("nvmlDeviceGetPowerUsage", 1e-3)

    def close(self) -> None:
        self._gpus.close()
