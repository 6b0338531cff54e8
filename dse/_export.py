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
from robustdice_core import atomic_write_bytes

__all__ = [
    "baselines_frame",
    "evaluation_attrs",
    "front_trials",
    "trials_frame",
    "write_frame",
]


def evaluation_attrs(evaluation: Evaluation) -> dict[str, Any]:
    """The JSON-able record of an `Evaluation` kept with each trial."""
    outcome = evaluation.outcome
    attrs: dict[str, Any] = {
        "replication_factor": outcome.replication_factor,
        "constraints": list(evaluation.constraints),
        "seconds": evaluation.seconds,
        "devices": [
            {
                "memory_mb": d.memory_bytes / 2**20,
                "weight_mb": d.weight_bytes / 2**20,
                "energy_j": d.energy_j,
                "gflops": d.flops / 1e9,
                "mb_tx": d.bytes_tx / 2**20,
            }
            for d in outcome.costs.per_device
        ],
        "latency_ms": 1e3 * outcome.costs.latency_s,
        "provenance": outcome.costs.provenance.value,
    }
    if outcome.accuracy is not None:
        attrs["accuracy"] = {
            _set_label(f): a
            for f, a in zip(outcome.accuracy.failure_sets, outcome.accuracy.accuracy, strict=True)
        }
    return attrs


def _set_label(failed: Sequence[int]) -> str:
    return "+".join(str(d) for d in failed) if failed else "none"


def front_trials(
    trials: Sequence[FrozenTrial], box: ReferenceBox
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """(feasible completed trials, their Pareto front)."""
    feasible = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and all(c <= 0 for c in t.user_attrs.get("constraints", []))
    ]
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
            "feasible": all(c <= 0 for c in trial.user_attrs.get("constraints", [])),
            "pareto": trial.number in on_front,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
        }
        for name, value in zip(names, trial.values or [None] * len(names), strict=True):
            row[name] = value
        row["replication_factor"] = trial.user_attrs.get("replication_factor")
        row["latency_ms"] = trial.user_attrs.get("latency_ms")
        row.update(trial.params)
        for label, acc in trial.user_attrs.get("accuracy", {}).items():
            row[f"acc[{label}]"] = acc
        for d, device in enumerate(trial.user_attrs.get("devices", [])):
            for key, value in device.items():
                row[f"{key}[d{d}]"] = value
        for key, value in trial.user_attrs.get("seconds", {}).items():
            row[f"seconds_{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def baselines_frame(baselines: dict[str, Evaluation], objective_names: list[str]) -> pd.DataFrame:
    rows = []
    for label, evaluation in baselines.items():
        row: dict[str, Any] = {
            "method": label,
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
