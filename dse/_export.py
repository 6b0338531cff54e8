"""All trials (and the baselines) as a DataFrame, written to CSV and Parquet."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from dse._pareto import ReferenceBox, pareto_mask
from dse._problem import Evaluation
from dse._record import TrialRecord, is_feasible
from robustdice_core import BASELINES
from robustdice_core.io import atomic_write_bytes

__all__ = [
    "baselines_frame",
    "front_trials",
    "trials_frame",
    "write_frame",
]


def front_trials(
    trials: Sequence[FrozenTrial], box: ReferenceBox
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """(feasible completed trials, their Pareto front)."""
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and is_feasible(t)]
    if not feasible:
        return [], []
    values = box.normalise(np.array([t.values for t in feasible]))
    mask = pareto_mask(values)
    return feasible, [t for t, on in zip(feasible, mask, strict=True) if on]


def trials_frame(study: optuna.Study, box: ReferenceBox) -> pd.DataFrame:
    trials = study.get_trials(deepcopy=False)
    _, front = front_trials(trials, box)
    on_front = {t.number for t in front}
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    rows = []
    for trial in trials:
        row: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state.name,
            "feasible": is_feasible(trial),
            "pareto": trial.number in on_front,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
        }
        for name, value in zip(names, trial.values or [None] * len(names), strict=True):
            row[name] = value
        row.update({f"constraint[{k}]": v for k, v in trial.constraints.items()})
        record = TrialRecord.from_trial(trial)
        row["replication_factor"] = record.replication_factor if record else None
        row["latency_ms"] = record.latency_ms if record else None
        row.update(trial.params)
        if record is not None:
            row.update({f"acc[{label}]": acc for label, acc in record.accuracy.items()})
            for d, device in enumerate(record.devices):
                row.update({f"{key}[d{d}]": value for key, value in device.items()})
            row.update({f"seconds_{key}": value for key, value in record.seconds.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def baselines_frame(baselines: dict[str, Evaluation], objective_names: list[str]) -> pd.DataFrame:
    """One row per baseline: ``method`` is its registry name, ``label`` its table label."""
    rows = []
    for name, evaluation in baselines.items():
        row: dict[str, Any] = {
            "method": name,
            "label": BASELINES.get(name).label,
            "replication_factor": evaluation.outcome.replication_factor,
        }
        row.update(dict(zip(objective_names, evaluation.values, strict=True)))
        row["feasible"] = evaluation.feasible
        rows.append(row)
    return pd.DataFrame(rows)


def write_frame(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Write ``stem.csv`` and ``stem.parquet`` atomically; return the paths."""
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    atomic_write_bytes(csv_path, frame.to_csv(index=False).encode())
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(parquet_path, buffer.getvalue())
    return [csv_path, parquet_path]
