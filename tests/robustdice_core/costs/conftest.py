"""Fixtures of the cost-model tests (helpers live in ``cost_cases``)."""

from __future__ import annotations

import pytest

from robustdice_core.costs import ModelCostInfo
from robustdice_core.units import trace_model

from .cost_cases import two_unit_model


@pytest.fixture(scope="module")
def tiny_info() -> ModelCostInfo:
    return ModelCostInfo.from_traced(trace_model(two_unit_model(), (1, 4, 4)))
