"""Shared fixtures: a persistent cache for the trained reference models, loaded models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Reference models are trained once per machine and reused by every test run (they are a
# cache: deterministic, keyed by recipe and data). Tests that need isolation use tmp_path.
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROBUSTDICE_CACHE", str(REPO / ".cache" / "robustdice"))

from robustdice_core.masking import MaskedNetwork  # noqa: E402
from robustdice_core.units import trace_model  # noqa: E402
from robustdice_core.zoo import EvalData, LoadedModel, load_model  # noqa: E402


@pytest.fixture(scope="session")
def vgg_digits() -> LoadedModel:
    return load_model("digits-vgg-bn")


@pytest.fixture(scope="session")
def vgg_digits_net(vgg_digits: LoadedModel) -> MaskedNetwork:
    return MaskedNetwork(trace_model(vgg_digits.module, vgg_digits.spec.input_shape))


@pytest.fixture(scope="session")
def digits_data(vgg_digits: LoadedModel) -> EvalData:
    return vgg_digits.spec.eval_data(None, calibration_size=None, test_size=None)
