"""`dse report`: a study's interactive HTML report.

`build_report_input` turns a `StudySnapshot` (a study read back from storage, no model
weights, no data) into the plain `reports.ReportInput` that the `reports` package draws;
`write_report` writes it next to the study's exports, ``<out>/<study>/report.html``.

Units (which layer each threshold sets) come from the model's architecture alone: it is built
with random weights and traced, never loaded with its weights or data.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from dse._export import flat_row, units_frame
from dse._objectives import OBJECTIVES, AccuracyMetric
from dse._optimize import writable_dir
from dse._optimize_view import MEASURED_COLUMNS, front_change_lines
from dse._pareto import ReferenceBox, hypervolume, pareto_mask
from dse._pick import PICK_RULES
from dse._record import TrialRecord, is_feasible, named_constraints
from dse._results import Measurement, StudySnapshot, load_snapshot, trial_measurement
from dse._settings import StudySettings
from dse._space import ThresholdSpace
from dse._study import UID_ATTR, check_out_dir, claim_out_dir, open_storage
from reports import ObjectiveMeta, ReportInput, write_report_html
from robustdice_core import BASELINES, RobustDiceError
from robustdice_core.costs import MB, load_device_profile
from robustdice_core.units import trace_model
from robustdice_core.zoo import MODELS

__all__ = [
    "DEFAULT_PICK",
    "REPORT_FILE",
    "build_report_input",
    "hypervolume_history",
    "report_path",
    "write_report",
]

REPORT_FILE = "report.html"
DEFAULT_OUT = Path("dse-runs")  # `dse optimize --out`'s default: the exports' root folder
DEFAULT_PICK = "knee"  # the trial the report selects first


def write_report(
    storage_url: str, study_name: str | None = None, out: Path | str | None = None
) -> Path:
    """Write the report of ``study_name`` (the most recent study when None) and return its
    path: ``<out>/<study>/report.html``, beside the study's exports (``out`` defaults to
    ``dse-runs``, as for `dse optimize`); an ``out`` ending in ``.html`` is the file itself.
    """
    snapshot = load_snapshot(storage_url, study_name)
    path = report_path(snapshot.name, out)
    writable_dir(path.parent, "--out")
    if path.name == REPORT_FILE and path.parent.name == snapshot.name:  # the export folder
        uid = _study_uid(storage_url, snapshot.name)
        check_out_dir(path.parent, storage_url, snapshot.name, uid)
        claim_out_dir(path.parent, storage_url, snapshot.name, uid)
    return write_report_html(build_report_input(snapshot), path)


def report_path(study_name: str, out: Path | str | None = None) -> Path:
    """``<out>/<study>/report.html`` (``out`` default ``dse-runs``), or ``out`` if it is a
    ``.html`` file name."""
    root = DEFAULT_OUT if out is None else Path(out)
    if root.suffix.lower() == ".html":
        return root
    return root / study_name / REPORT_FILE


def build_report_input(snapshot: StudySnapshot) -> ReportInput:
    """The study's trials, baselines, units, hypervolume history and default pick."""
    settings = snapshot.settings
    return ReportInput(
        study=snapshot.name,
        storage=snapshot.storage_url,
        objectives=tuple(_objective(name, settings) for name in snapshot.objectives),
        devices=settings.devices,
        trials=_trials_frame(snapshot),
        baselines=_baselines_frame(snapshot),
        units=_units_frame(snapshot),
        hypervolume=hypervolume_history(snapshot.trials, snapshot.box),
        profile=_profile(settings),
        accuracy_source=_accuracy_source(settings) if settings.needs_accuracy else "",
        default_trial=snapshot.pick(DEFAULT_PICK).number if snapshot.front else None,
        default_rule=f"{DEFAULT_PICK}: {PICK_RULES.get(DEFAULT_PICK).description}",
        deploy_command=_deploy_command(snapshot),
        notes=tuple(_notes(settings) + _measured_notes(snapshot)),
    )


def hypervolume_history(trials: Sequence[FrozenTrial], box: ReferenceBox) -> pd.DataFrame:
    """Per completed trial (in trial number order): the hypervolume of the feasible completed
    trials up to and including it, in the study's reference box. Columns ``trial``,
    ``hypervolume``; never decreasing."""
    front = np.empty((0, len(box.ideal)))
    value = 0.0
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state != TrialState.COMPLETE:
            continue
        if is_feasible(trial):  # a dominated point adds nothing: keep the front only
            points = np.vstack([front, np.asarray(trial.values, dtype=float)[None, :]])
            front = points[pareto_mask(box.normalise(points))]
            value = hypervolume(front, box)
        rows.append({"trial": trial.number, "hypervolume": value})
    return pd.DataFrame(rows, columns=["trial", "hypervolume"])


# ------------------------------------------------------------------------------ frames
def _trials_frame(snapshot: StudySnapshot) -> pd.DataFrame:
    """`dse._export.trials_frame`'s columns, plus ``unit_replication[u<i>]``."""
    names = list(snapshot.objectives)
    constraint_names = snapshot.settings.constraint_names
    on_front = {t.number for t in snapshot.front}
    rows = []
    for trial in snapshot.trials:
        head: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state.name,
            "feasible": is_feasible(trial),
            "pareto": trial.number in on_front,
        }
        values = trial.values or [None] * len(names)
        record = TrialRecord.from_trial(trial)
        row = flat_row(
            head,
            dict(zip(names, values, strict=True)),
            named_constraints(trial, constraint_names),
            record,
        )
        measured = _measured_row(trial_measurement(trial))
        rows.append({**row, **_unit_replication(record), **trial.params, **measured})
    columns = ["trial", "state", "feasible", "pareto", *names]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def _baselines_frame(snapshot: StudySnapshot) -> pd.DataFrame:
    rows = []
    for name, baseline in snapshot.baselines.items():
        head = {"method": name, "label": BASELINES.get(name).label, "feasible": baseline.feasible}
        values = dict(zip(snapshot.objectives, baseline.values, strict=True))
        row = flat_row(head, values, baseline.constraints, baseline.record)
        rows.append(
            {**row, **_unit_replication(baseline.record), **_measured_row(baseline.measured)}
        )
    return pd.DataFrame(rows)


def _measured_row(measurement: Measurement | None) -> dict[str, float]:
    """``measured[<figure>]`` columns of a trial `dse measure` ran (NaN: not measured)."""
    if measurement is None:
        return {}
    columns = {column.label: column.measured(measurement) for column in MEASURED_COLUMNS}
    return {f"measured[{k}]": math.nan if v is None else float(v) for k, v in columns.items()}


def _unit_replication(record: TrialRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {f"unit_replication[u{u}]": r for u, r in enumerate(record.unit_replication)}


def _units_frame(snapshot: StudySnapshot) -> pd.DataFrame:
    """Layer names from the architecture (random weights, traced; the caller's random state
    is left as it was); plain unit numbers if the model cannot be built here."""
    space = _space(snapshot.space)
    spec = MODELS.get(snapshot.settings.model)
    try:
        with torch.random.fork_rng(devices=[]):
            units = trace_model(spec.build(), spec.input_shape, name=spec.name).units
    except RobustDiceError:
        units = ()
    if len(units) == len(space.unit_param):
        return units_frame(units, space)
    return pd.DataFrame(
        {
            "unit": range(len(space.unit_param)),
            "layer": [f"unit {u}" for u in range(len(space.unit_param))],
            "param": [space.names[p] for p in space.unit_param],
            "low": [space.low[p] for p in space.unit_param],
            "high": [space.high[p] for p in space.unit_param],
        }
    )


def _space(stored: dict[str, Any]) -> ThresholdSpace:
    return ThresholdSpace(
        names=tuple(str(n) for n in stored["names"]),
        low=tuple(float(v) for v in stored["low"]),
        high=tuple(float(v) for v in stored["high"]),
        unit_param=tuple(int(p) for p in stored["unit_param"]),
    )


# ------------------------------------------------------------------------------ text
def _objective(name: str, settings: StudySettings) -> ObjectiveMeta:
    spec = OBJECTIVES.get(name)
    return ObjectiveMeta(
        name=name,
        label=spec.label,
        maximize=spec.maximize,
        accuracy=spec.needs_accuracy,
        description=_acc_description(settings) if spec.needs_accuracy else "",
    )


def _acc_description(settings: StudySettings) -> str:
    accuracy = settings.accuracy
    if accuracy.metric is AccuracyMetric.expected:
        return (
            f"expected Top-1 % when each of the {settings.devices} devices fails "
            f"independently with probability {accuracy.fail_prob:g}"
        )
    sizes = " or ".join(str(k) for k in accuracy.failures)
    return (
        f"{accuracy.metric.value} Top-1 % over every failure set of {sizes} failed "
        f"device(s) out of {settings.devices}"
    )


def _profile(settings: StudySettings) -> str:
    devices = f"{settings.devices} × {settings.device_profile}"
    return f"{devices}, {settings.link_profile}, {settings.dtype.value}, {settings.schedule_text}"


def _accuracy_source(settings: StudySettings) -> str:
    images = f"{settings.test_size} test images" if settings.test_size else "the test split"
    return f"measured by simulated device failures on {images}"


def _deploy_command(snapshot: StudySnapshot) -> str:
    study, storage = shlex.quote(snapshot.name), shlex.quote(snapshot.storage_url)
    return f"dse deploy {study} --trial {{trial}} --storage {storage} --out bundle-{{trial}}"


def _notes(settings: StudySettings) -> list[str]:
    notes = []
    if "mem" in settings.objectives:
        runtime_mb = load_device_profile(settings.device_profile).runtime_overhead_bytes.value
        notes.append(
            "mem: the partition's weights and activations on the fullest device; every "
            f"device also holds the profile's runtime constant of {runtime_mb / MB:.0f} MB."
        )
    notes.append(
        "hypervolume: share of the study's reference box dominated by the feasible front "
        "(box: the best baseline value per objective to the worst plus a tenth of the spread; "
        "0 for maximised objectives), as `dse optimize` reports it."
    )
    notes.append(
        f"selected first: the {DEFAULT_PICK} trial ({PICK_RULES.get(DEFAULT_PICK).description}); "
        "`dse pareto --pick RULE` names other rules."
    )
    return notes


def _measured_notes(snapshot: StudySnapshot) -> list[str]:
    """Estimated and measured figures side by side, and the front under measured values."""
    if not snapshot.measurements:
        return []
    subjects = [(f"#{t.number}", trial_measurement(t)) for t in snapshot.trials]
    subjects += [(name, b.measured) for name, b in snapshot.baselines.items()]
    measured = [(label, m) for label, m in subjects if m is not None]
    first = measured[0][1]
    notes = [
        f"measured ({first.provenance}) next to estimated (cost model; FPS and energy with "
        f"{first.in_flight} images in flight, overlapped schedule; MB with the runtime "
        "constant), as est / meas:"
    ]
    for label, m in measured:
        cells = ", ".join(
            f"{c.label} {c.cell(m)}" for c in MEASURED_COLUMNS if c.measured(m) is not None
        )
        notes.append(f"{label}: {cells}")
    return notes + front_change_lines(snapshot.front_change())


def _study_uid(storage_url: str, name: str) -> str | None:
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    uid = study.user_attrs.get(UID_ATTR)
    return None if uid is None else str(uid)
