"""RobustDiCE core: units, importance scores, partitioners, failure simulation, model zoo."""

from __future__ import annotations

from robustdice_core._errors import (
    CorruptFileError,
    InvalidParameterError,
    MissingResourceError,
    RobustDiceError,
    UnknownNameError,
    UnsupportedModelError,
)
from robustdice_core._registry import Registry, parse_enum
from robustdice_core.failures import (
    FailureAccuracy,
    FailureEvaluator,
    SizeStats,
    failure_sets,
)
from robustdice_core.masking import MaskedNetwork, split_graph
from robustdice_core.partition import (
    BASELINES,
    CDC,
    LOP,
    PARTITIONERS,
    FullReplication,
    Partition,
    RobustDiCE,
)
from robustdice_core.units import TracedModel, Unit, UnitKind, trace_model

__all__ = [
    "BASELINES",
    "CDC",
    "CorruptFileError",
    "FailureAccuracy",
    "FailureEvaluator",
    "FullReplication",
    "InvalidParameterError",
    "LOP",
    "MaskedNetwork",
    "MissingResourceError",
    "PARTITIONERS",
    "Partition",
    "Registry",
    "RobustDiCE",
    "RobustDiceError",
    "SizeStats",
    "TracedModel",
    "UnknownNameError",
    "Unit",
    "UnitKind",
    "UnsupportedModelError",
    "failure_sets",
    "parse_enum",
    "split_graph",
    "trace_model",
]
