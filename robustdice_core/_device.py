"""Where tensors are computed (`--device auto|cpu|cuda[:N]`) and how much memory a batch may use.

`ComputeDevice` is the typed value of a device option, parsed once where it enters. ``auto``
is CUDA device 0 when CUDA is available, else the CPU; ``cuda`` is CUDA device 0. Resolving a
choice checks that the device exists, so ``cuda:7`` on a machine with one GPU, or ``cuda``
without one, is refused where it is given, with one line naming the option.

Memory: batched work (masked failure evaluation, s3 ablations) is sized from a byte budget.
On a CUDA device the default budget is a fixed fraction of the memory free at that moment
(`torch.cuda.mem_get_info`), so that the rest of this process and other processes on the card
keep room; on the CPU it is the caller's fixed default (free RAM says little about what the
allocator will find).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from robustdice_core._errors import InvalidParameterError
from robustdice_core._registry import Registry

__all__ = [
    "CUDA_MEMORY_FRACTION",
    "ComputeDevice",
    "DeviceKind",
    "check_batch_size",
    "exact_float32",
    "free_memory_bytes",
    "memory_budget_bytes",
    "module_device",
]

MB = 2**20
CUDA_MEMORY_FRACTION = 0.5  # of the free memory: one batch's activations, with room to spare
_SPEC = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<index>\d+))?$")
_CHOICES = "auto, cpu, cuda or cuda:N"


class DeviceKind(StrEnum):
    AUTO = "auto"  # CUDA when present, else the CPU
    CPU = "cpu"
    CUDA = "cuda"


def _resolve_auto(index: int | None) -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def _resolve_cpu(index: int | None) -> torch.device:
    return torch.device("cpu")


def _resolve_cuda(index: int | None) -> torch.device:
    wanted = f"cuda:{index}" if index is not None else "cuda"
    if not torch.cuda.is_available():
        raise InvalidParameterError(
            f"`--device {wanted}`: CUDA is not available on this machine (torch "
            f"{torch.__version__}); use `--device cpu` or `--device auto`."
        )
    count = torch.cuda.device_count()
    chosen = 0 if index is None else index
    if chosen >= count:
        have = "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"
        raise InvalidParameterError(
            f"`--device {wanted}`: this machine has {count} CUDA device"
            f"{'s' if count != 1 else ''} ({have}); choose one of those or `--device cpu`."
        )
    return torch.device("cuda", chosen)


_RESOLVERS: Registry[Callable[[int | None], torch.device]] = Registry("device kind")
_RESOLVERS.add(DeviceKind.AUTO.value, _resolve_auto)
_RESOLVERS.add(DeviceKind.CPU.value, _resolve_cpu)
_RESOLVERS.add(DeviceKind.CUDA.value, _resolve_cuda)


@dataclass(frozen=True)
class ComputeDevice:
    """A device choice: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (`parse`), resolved to a
    `torch.device` by `resolve`, which checks that it exists here."""

    kind: DeviceKind = DeviceKind.AUTO
    index: int | None = None  # CUDA only

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", DeviceKind(self.kind))
        if self.index is not None and (self.kind is not DeviceKind.CUDA or self.index < 0):
            raise InvalidParameterError(
                f"`--device` takes an index only as cuda:N with N >= 0, got {self!s}."
            )

    @classmethod
    def parse(cls, value: str | ComputeDevice | torch.device) -> ComputeDevice:
        """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (or a `torch.device`), checked."""
        if isinstance(value, ComputeDevice):
            return value
        text = str(value).strip().lower()
        match = _SPEC.match(text)
        if match is None or match["kind"] not in _RESOLVERS:
            raise InvalidParameterError(f"`--device` must be {_CHOICES}, got {str(value)!r}.")
        index = match["index"]
        if index is not None and match["kind"] != DeviceKind.CUDA:
            raise InvalidParameterError(
                f"`--device` takes an index only as cuda:N, got {str(value)!r}."
            )
        return cls(DeviceKind(match["kind"]), None if index is None else int(index))

    def resolve(self) -> torch.device:
        """The `torch.device` this choice means on this machine.

        Raises:
            InvalidParameterError: CUDA was asked for and is missing, or has no such index.
        """
        return _RESOLVERS.get(self.kind.value)(self.index)

    def __str__(self) -> str:
        return self.kind.value if self.index is None else f"{self.kind.value}:{self.index}"


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a stateless one)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _cuda_free(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


_FREE_MEMORY: dict[str, Callable[[torch.device], int]] = {"cuda": _cuda_free}


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of an accelerator now; None for the CPU (no fixed pool to ask)."""
    query = _FREE_MEMORY.get(device.type)
    return None if query is None else query(device)


def memory_budget_bytes(
    device: torch.device, requested_mb: int | None, cpu_default_mb: int
) -> int:
    """Bytes one batched step may hold: ``requested_mb`` when given; else on an accelerator
    `CUDA_MEMORY_FRACTION` of its free memory now, on the CPU ``cpu_default_mb``."""
    if requested_mb is not None:
        return max(0, requested_mb) * MB
    free = free_memory_bytes(device)
    return cpu_default_mb * MB if free is None else int(free * CUDA_MEMORY_FRACTION)


def check_batch_size(batch_size: int | None) -> None:
    """A fixed batch size (samples per batched forward) is at least 1; None: from memory."""
    if batch_size is not None and batch_size < 1:
        raise InvalidParameterError(f"`--batch-size` must be at least 1, got {batch_size}.")


@contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 precision for cuDNN convolutions and CUDA matmuls while it runs.

    cuDNN convolutions use TF32 by default on Ampere and later (10-bit mantissa), which would
    make CUDA scores and accuracies differ from the CPU's by far more than summation order.
    A no-op on the CPU. Uses the fp32_precision API only (mixing it with the legacy
    ``allow_tf32`` flags is an error in torch).
    """
    conv = getattr(torch.backends.cudnn, "conv")  # set up by torch, missing from its stubs
    matmul = torch.backends.cuda.matmul
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
