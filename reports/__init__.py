"""Study results (pandas DataFrames) as an interactive, self-contained HTML report (plotly).

Depends on nothing of ours but data: the `dse` side builds a `ReportInput` from a study and
calls `write_report_html`. Each figure has an info function (plain data, tested directly)
and a thin plot function (`plotly.graph_objects.Figure`), as Optuna's visualisation does.
"""

from __future__ import annotations

from reports._detail import DETAIL_FIGURES, TrialSummary, trial_details, trial_summary
from reports._device_costs import (
    CostPanel,
    DeviceCostsInfo,
    device_costs_info,
    plot_device_costs,
)
from reports._failures import (
    FailureAccuracyInfo,
    FailureSeries,
    failure_accuracy_info,
    failure_series,
    plot_failure_accuracy,
)
from reports._frames import failure_size
from reports._html import initial_trial, render_report, write_report_html
from reports._hypervolume import HypervolumeInfo, hypervolume_info, plot_hypervolume
from reports._input import ObjectiveMeta, ReportInput
from reports._parallel import (
    ParallelAxis,
    ParallelCoordinatesInfo,
    parallel_coordinates_info,
    plot_parallel_coordinates,
)
from reports._pareto_front import (
    BaselinePoint,
    ParetoFrontInfo,
    PointSet,
    non_dominated,
    pareto_front_info,
    plot_pareto_front,
)
from reports._replication import ReplicationInfo, plot_replication, replication_info
from reports._scatter_matrix import plot_scatter_matrix

__all__ = [
    "DETAIL_FIGURES",
    "BaselinePoint",
    "CostPanel",
    "DeviceCostsInfo",
    "FailureAccuracyInfo",
    "FailureSeries",
    "HypervolumeInfo",
    "ObjectiveMeta",
    "ParallelAxis",
    "ParallelCoordinatesInfo",
    "ParetoFrontInfo",
    "PointSet",
    "ReplicationInfo",
    "ReportInput",
    "TrialSummary",
    "device_costs_info",
    "failure_accuracy_info",
    "failure_series",
    "failure_size",
    "hypervolume_info",
    "initial_trial",
    "non_dominated",
    "parallel_coordinates_info",
    "pareto_front_info",
    "plot_device_costs",
    "plot_failure_accuracy",
    "plot_hypervolume",
    "plot_parallel_coordinates",
    "plot_pareto_front",
    "plot_replication",
    "plot_scatter_matrix",
    "render_report",
    "replication_info",
    "trial_details",
    "trial_summary",
    "write_report_html",
]
