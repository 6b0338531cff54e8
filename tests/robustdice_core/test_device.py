"""`--device` parsing and resolution, memory budgets and float32 precision (no GPU needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustdice_core import InvalidParameterError
from robustdice_core._device import (
    CUDA_MEMORY_FRACTION,
    ComputeDevice,
    DeviceKind,
    check_batch_size,
    exact_float32,
    free_memory_bytes,
    memory_budget_bytes,
    module_device,
)

MB = 2**20


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize(
    ("text", "kind", "index"),
    [
        ("auto", DeviceKind.AUTO, None),
        ("cpu", DeviceKind.CPU, None),
        (" CUDA ", DeviceKind.CUDA, None),
        ("cuda:1", DeviceKind.CUDA, 1),
    ],
)
def test_parse_and_round_trip(text: str, kind: DeviceKind, index: int | None) -> None:
    parsed = ComputeDevice.parse(text)
    assert (parsed.kind, parsed.index) == (kind, index)
    assert ComputeDevice.parse(str(parsed)) == parsed
    assert ComputeDevice.parse(parsed) is parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tpu", "`--device` must be auto, cpu, cuda or cuda:N, got 'tpu'."),
        ("", "`--device` must be auto, cpu, cuda or cuda:N, got ''."),
        ("cuda:-1", "got 'cuda:-1'"),
        ("cuda:x", "got 'cuda:x'"),
        ("cpu:0", "`--device` takes an index only as cuda:N, got 'cpu:0'."),
        ("auto:1", "takes an index only as cuda:N"),
    ],
)
def test_bad_spellings_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        ComputeDevice.parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("count", "expected"), [(0, "cpu"), (1, "cuda:0"), (4, "cuda:0")])
def test_auto_is_cuda_when_present(
    monkeypatch: pytest.MonkeyPatch, count: int, expected: str
) -> None:
    _fake_cuda(monkeypatch, count)
    assert ComputeDevice.parse("auto").resolve() == torch.device(expected)
    assert ComputeDevice().resolve() == torch.device(expected)


def test_cpu_always_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, 2)
    assert ComputeDevice.parse("cpu").resolve() == torch.device("cpu")


def test_cuda_indices_are_checked_against_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, 2)
    assert ComputeDevice.parse("cuda").resolve() == torch.device("cuda", 0)
    assert ComputeDevice.parse("cuda:1").resolve() == torch.device("cuda", 1)
    with pytest.raises(InvalidParameterError, match=r"has 2 CUDA devices \(cuda:0..cuda:1\)"):
        ComputeDevice.parse("cuda:7").resolve()
    _fake_cuda(monkeypatch, 1)
    with pytest.raises(InvalidParameterError, match=r"`--device cuda:7`: .* 1 CUDA device \("):
        ComputeDevice.parse("cuda:7").resolve()


@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_names_the_option_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    _fake_cuda(monkeypatch, 0)
    with pytest.raises(InvalidParameterError) as info:
        ComputeDevice.parse(text).resolve()
    message = str(info.value)
    assert message.startswith(f"`--device {text}`: CUDA is not available")
    assert "`--device cpu`" in message and "\n" not in message


def test_budget_comes_from_free_cuda_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[torch.device] = []

    def mem_get_info(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return 6000 * MB, 16000 * MB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    cuda = torch.device("cuda", 1)
    assert free_memory_bytes(cuda) == 6000 * MB
    assert memory_budget_bytes(cuda, None, 512) == int(6000 * MB * CUDA_MEMORY_FRACTION)
    assert asked == [cuda, cuda]
    assert memory_budget_bytes(cuda, 256, 512) == 256 * MB  # an explicit budget wins


def test_cpu_budget_is_the_callers_default() -> None:
    cpu = torch.device("cpu")
    assert free_memory_bytes(cpu) is None
    assert memory_budget_bytes(cpu, None, 512) == 512 * MB
    assert memory_budget_bytes(cpu, 64, 512) == 64 * MB
    assert memory_budget_bytes(cpu, -1, 512) == 0


def test_module_device() -> None:
    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU


def test_exact_float32_turns_tf32_off_and_restores_it() -> None:
    conv, matmul = getattr(torch.backends.cudnn, "conv"), torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision)
    with exact_float32():
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, matmul.fp32_precision) == before
    with pytest.raises(RuntimeError), exact_float32():
        raise RuntimeError
    assert (conv.fp32_precision, matmul.fp32_precision) == before


@pytest.mark.parametrize("bad", [0, -3])
def test_batch_size_must_be_positive(bad: int) -> None:
    check_batch_size(None)
    check_batch_size(1)
    with pytest.raises(
        InvalidParameterError, match=f"`--batch-size` must be at least 1, got {bad}"
    ):
        check_batch_size(bad)
