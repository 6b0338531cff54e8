"""The paper's experiments (and our own) as declarative study specs with one runner.

``run_study("table1")`` (or ``dse study run table1``) computes a registered study and writes
its CSV, a self-contained HTML page with the paper's numbers beside ours, and a JSON record
of what was run on which model, weights and data.
"""

from __future__ import annotations

from studies import _registered, _runtime_meter  # noqa: F401  (fill STUDIES, KINDS, meters)
from studies._kinds import KINDS, Progress, StudyKind
from studies._meters import RESOURCE_METERS, MeasuredResources, ResourceMeter
from studies._paper import PAPER_TABLE1, PAPER_TABLE2, paper_model
from studies._plan import ModelRun, StudyRequest, plan_runs
from studies._result import Finding, ModelSource, StudyData, Verdict
from studies._runner import StudyOutcome, default_out, run_study, study_status
from studies._runtime_meter import local_runtime_meter
from studies._spec import (
    ALL_SCORE_SUBSETS,
    EMBEDDED_MODELS,
    STUDIES,
    AblationSpec,
    Configuration,
    FailureSweepSpec,
    ResourceSpec,
    StudySpec,
    StudyUnavailableError,
    TimeoutSpec,
    subset_label,
)
from studies._table1 import aggregate_seeds
from studies._table2 import Costed, cost_configurations, resource_rows

__all__ = [
    "ALL_SCORE_SUBSETS",
    "EMBEDDED_MODELS",
    "KINDS",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "RESOURCE_METERS",
    "local_runtime_meter",
    "STUDIES",
    "AblationSpec",
    "Configuration",
    "Costed",
    "FailureSweepSpec",
    "Finding",
    "MeasuredResources",
    "ModelRun",
    "ModelSource",
    "Progress",
    "ResourceMeter",
    "ResourceSpec",
    "StudyData",
    "StudyKind",
    "StudyOutcome",
    "StudyRequest",
    "StudySpec",
    "StudyUnavailableError",
    "TimeoutSpec",
    "Verdict",
    "aggregate_seeds",
    "cost_configurations",
    "default_out",
    "paper_model",
    "plan_runs",
    "resource_rows",
    "run_study",
    "study_status",
    "subset_label",
]
