"""The design-space exploration: settings, problem, samplers, studies, and the `dse` CLI.

The names below are the library API; tests, benchmarks and the command line use them.
"""

from __future__ import annotations

from dse._compare import MethodResult, compare_methods
from dse._deploy import DeployResult, deploy, verify
from dse._export import baselines_frame, front_trials, trials_frame, units_frame
from dse._objectives import OBJECTIVES, AccuracyMetric, AccuracySettings, Objective, TrialOutcome
from dse._optimize import (
    OptimizeResult,
    PreparedStudy,
    Progress,
    prepare_study,
    reference_box,
    run_study,
)
from dse._pareto import ReferenceBox, hypervolume, pareto_mask
from dse._pick import PICK_RULES, PickRule, pick_trial
from dse._problem import BASELINE_NAMES, Evaluation, RobustnessProblem
from dse._pymoo_sampler import PymooSampler
from dse._record import (
    FAIL_REASON_ATTR,
    RETRY_OF_ATTR,
    TrialRecord,
    is_feasible,
    named_constraints,
    record_constraints,
)
from dse._report import build_report_input, hypervolume_history, write_report
from dse._results import (
    BaselineResult,
    StudySnapshot,
    latest_study_name,
    load_snapshot,
    pareto_payload,
)
from dse._samplers import DEFAULT_SAMPLER, SAMPLERS, SamplerRequest
from dse._settings import (
    MAX_DEVICES,
    MAX_FAILURE_SETS,
    SEARCH_ONLY_SETTINGS,
    StudySettings,
    check_devices,
    check_fail_prob,
)
from dse._space import TIE_MODES, ThresholdSpace, build_space
from dse._study import (
    BOX_ATTR,
    FINGERPRINTS_ATTR,
    SETTINGS_ATTR,
    SPACE_ATTR,
    StudyLock,
    open_storage,
)
from dse._workbench import Workbench, open_workbench

__all__ = [
    "BASELINE_NAMES",
    "BOX_ATTR",
    "DEFAULT_SAMPLER",
    "FAIL_REASON_ATTR",
    "FINGERPRINTS_ATTR",
    "MAX_DEVICES",
    "MAX_FAILURE_SETS",
    "OBJECTIVES",
    "PICK_RULES",
    "RETRY_OF_ATTR",
    "SAMPLERS",
    "SEARCH_ONLY_SETTINGS",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "TIE_MODES",
    "AccuracyMetric",
    "AccuracySettings",
    "DeployResult",
    "BaselineResult",
    "Evaluation",
    "MethodResult",
    "Objective",
    "OptimizeResult",
    "PickRule",
    "PreparedStudy",
    "Progress",
    "PymooSampler",
    "ReferenceBox",
    "RobustnessProblem",
    "SamplerRequest",
    "StudyLock",
    "StudySettings",
    "StudySnapshot",
    "ThresholdSpace",
    "TrialOutcome",
    "TrialRecord",
    "Workbench",
    "baselines_frame",
    "build_report_input",
    "build_space",
    "check_devices",
    "check_fail_prob",
    "compare_methods",
    "deploy",
    "front_trials",
    "hypervolume_history",
    "hypervolume",
    "is_feasible",
    "latest_study_name",
    "load_snapshot",
    "open_storage",
    "open_workbench",
    "named_constraints",
    "pareto_mask",
    "pareto_payload",
    "pick_trial",
    "prepare_study",
    "record_constraints",
    "reference_box",
    "run_study",
    "trials_frame",
    "units_frame",
    "verify",
    "write_report",
]
