"""Fixtures shared by the robustdice_core tests: loaded digits models, traced torchvision nets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import torchvision
from torch import nn

from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LoadedModel, load_model

DIGITS_MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
PAPER_MODELS = ("alexnet", "vgg16_bn", "convnext_tiny")


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """The models here are tiny: one intra-op thread is faster and immune to a busy machine
    (two threads on two shared cores ran these forwards up to 10x slower). Opt in per module
    with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_model() -> Callable[[str], LoadedModel]:
    """``digits_model(name)``: a trained digits reference model, loaded once per session."""
    loaded: dict[str, LoadedModel] = {}

    def get(name: str) -> LoadedModel:
        if name not in loaded:
            loaded[name] = load_model(name)
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def digits_net(digits_model: Callable[[str], LoadedModel]) -> Callable[[str], MaskedNetwork]:
    """``digits_net(name)``: the masked network of a trained digits model, built once."""
    nets: dict[str, MaskedNetwork] = {}

    def get(name: str) -> MaskedNetwork:
        if name not in nets:
            model = digits_model(name)
            nets[name] = MaskedNetwork(trace_model(model.module, model.spec.input_shape))
        return nets[name]

    return get


@pytest.fixture(scope="module")
def paper_model() -> Callable[[str], tuple[nn.Module, TracedModel]]:
    """``paper_model(name)``: a torchvision model (seeded random weights) and its trace; module
    scope, so the ~1 GB of random weights is released after each test module."""
    built: dict[str, tuple[nn.Module, TracedModel]] = {}

    def get(name: str) -> tuple[nn.Module, TracedModel]:
        if name not in built:
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, weights=None).eval()
            built[name] = (model, trace_model(model, (3, 224, 224)))
        return built[name]

    return get
