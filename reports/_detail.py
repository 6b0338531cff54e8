"""The selected trial: a summary for the detail panel, and the per-trial data the page embeds
(summary, objective values and one patch per detail figure) so a click redraws everything."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports._device_costs import device_costs_info, device_costs_patch, plot_device_costs
from reports._failures import (
    failure_accuracy_info,
    failure_accuracy_patch,
    plot_failure_accuracy,
)
from reports._input import ReportInput
from reports._pareto_front import ParetoFrontInfo
from reports._patch import Patch
from reports._replication import plot_replication, replication_info, replication_patch

__all__ = [
    "DETAIL_FIGURES",
    "DetailFigure",
    "TrialSummary",
    "trial_details",
    "trial_status",
    "trial_summary",
]

ON_FRONT, DOMINATED, INFEASIBLE = "on the Pareto front", "dominated", "infeasible"


@dataclass(frozen=True)
class DetailFigure:
    """A per-trial figure: drawn once for the first trial, patched for the others."""

    plot: Callable[[ReportInput, int], go.Figure]
    patch: Callable[[ReportInput, int], Patch]


# div id on the page -> figure
DETAIL_FIGURES: dict[str, DetailFigure] = {
    "fig-failures": DetailFigure(
        lambda data, n: plot_failure_accuracy(failure_accuracy_info(data, n)),
        lambda data, n: failure_accuracy_patch(failure_accuracy_info(data, n)),
    ),
    "fig-devices": DetailFigure(
        lambda data, n: plot_device_costs(device_costs_info(data, n)),
        lambda data, n: device_costs_patch(device_costs_info(data, n)),
    ),
    "fig-replication": DetailFigure(
        lambda data, n: plot_replication(replication_info(data, n)),
        lambda data, n: replication_patch(replication_info(data, n)),
    ),
}


@dataclass(frozen=True)
class TrialSummary:
    """What the detail panel shows: ``rows`` are (label, formatted value) pairs."""

    trial: int
    status: str  # ON_FRONT, DOMINATED or INFEASIBLE
    rows: tuple[tuple[str, str], ...]
    deploy_command: str


def trial_status(front: ParetoFrontInfo, trial: int) -> str:
    """Where the trial stands: on the front, dominated or infeasible."""
    if trial in front.front.trials:
        return ON_FRONT
    return DOMINATED if trial in front.dominated.trials else INFEASIBLE


def trial_summary(data: ReportInput, front: ParetoFrontInfo, trial: int) -> TrialSummary:
    """The detail panel's rows for one completed trial, and its deploy command."""
    row = data.row(trial)
    rows = [(f"{o.name} ({o.label})", _format(float(row[o.name]))) for o in data.objectives]
    rows += _record_rows(row)
    rows += _constraint_rows(row)
    rows += _threshold_rows(data, row)
    return TrialSummary(
        trial=trial,
        status=trial_status(front, trial),
        rows=tuple(rows),
        deploy_command=data.deploy_command_for(trial),
    )


def trial_details(data: ReportInput, front: ParetoFrontInfo) -> dict[str, dict[str, Any]]:
    """Per completed trial (keyed by its number as text): ``summary``, ``values`` (objective
    values in order) and ``figures`` (div id -> patch)."""
    names = data.objective_names
    details = {}
    for trial in data.completed_numbers:
        row = data.row(trial)
        details[str(trial)] = {
            "summary": asdict(trial_summary(data, front, trial)),
            "values": [float(row[n]) for n in names],
            "figures": {div: fig.patch(data, trial) for div, fig in DETAIL_FIGURES.items()},
        }
    return details


def _record_rows(row: pd.Series) -> list[tuple[str, str]]:
    rows = []
    if "replication_factor" in row.index and pd.notna(row["replication_factor"]):
        rows.append(("replication factor", f"{float(row['replication_factor']):.2f}×"))
    if "latency_ms" in row.index and pd.notna(row["latency_ms"]):
        rows.append(("latency (ms / image)", _format(float(row["latency_ms"]))))
    if "provenance" in row.index and pd.notna(row["provenance"]):
        rows.append(("costs", str(row["provenance"])))
    return rows


def _constraint_rows(row: pd.Series) -> list[tuple[str, str]]:
    rows = []
    for column in row.index:
        name = str(column)
        if name.startswith("constraint[") and pd.notna(row[column]):
            value = float(row[column])
            verdict = "met" if value <= 0 else f"broken by {_format(value)}"
            rows.append((name.removeprefix("constraint[").removesuffix("]"), verdict))
    return rows


def _threshold_rows(data: ReportInput, row: pd.Series) -> list[tuple[str, str]]:
    values = [float(row[p]) for p in data.params if p in row.index and pd.notna(row[p])]
    if not values:
        return []
    spread = f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"
    return [("thresholds min / median / max", spread)]


def _format(value: float) -> str:
    """Four significant digits, without scientific notation for everyday magnitudes."""
    if not math.isfinite(value):
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        digits = max(0, 3 - math.floor(math.log10(abs(value)))) if value else 0
        return f"{value:.{digits}f}"
    return f"{value:.3e}"
