"""All trials, the baselines and the units as DataFrames, written to CSV and Parquet.

Trials and baselines share their columns (`flat_row`); the units table says which layer and
which search parameter each per-unit threshold belongs to.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from dse._pareto import ReferenceBox, pareto_mask
from dse._problem import Evaluation
from dse._record import TrialRecord, is_feasible, named_constraints
from dse._settings import StudySettings
from dse._space import ThresholdSpace
from dse._study import SETTINGS_ATTR
from robustdice_core import BASELINES, Unit
from robustdice_core.io import atomic_write_bytes

__all__ = [
    "baselines_frame",
    "flat_row",
    "front_trials",
    "trials_frame",
    "units_frame",
    "write_frame",
]

_UNIT_COLUMNS = ("unit", "layer", "kind", "neurons", "param", "low", "high")


def front_trials(
    trials: Sequence[FrozenTrial], box: ReferenceBox
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """(feasible completed trials, their Pareto front)."""
    feasible = [t for t in trials if is_feasible(t)]  # completed ones only
    if not feasible:
        return [], []
    values = box.normalise(np.array([t.values for t in feasible]))
    mask = pareto_mask(values)
    return feasible, [t for t, on in zip(feasible, mask, strict=True) if on]


def trials_frame(study: optuna.Study, box: ReferenceBox) -> pd.DataFrame:
    """One row per trial: state, feasibility, objectives, constraints, its record's figures
    (the columns of `baselines_frame`; ``partitioner`` is the method the trial ran, which
    a `--method both` study mixes), then the search parameters."""
    trials = study.get_trials(deepcopy=False)
    _, front = front_trials(trials, box)
    on_front = {t.number for t in front}
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    settings = _settings(study)
    constraint_names = settings.constraint_names if settings is not None else None
    methods = settings.search_methods if settings is not None else ()
    rows = []
    for trial in trials:
        record = TrialRecord.from_trial(trial)
        head: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state.name,
            "feasible": is_feasible(trial),
            "pareto": trial.number in on_front,
            "duration_s": trial.duration.total_seconds() if trial.duration else None,
        }
        values = trial.values or [None] * len(names)
        row = flat_row(
            head,
            dict(zip(names, values, strict=True)),
            named_constraints(trial, constraint_names),
            record,
        )
        if record is not None:
            row["partitioner"] = _method(record, methods)
        rows.append({**row, **trial.params})
    return pd.DataFrame(rows)


def _settings(study: optuna.Study) -> StudySettings | None:
    stored = study.user_attrs.get(SETTINGS_ATTR)
    return StudySettings.from_dict(stored) if stored else None


def _method(record: TrialRecord, methods: Sequence[str]) -> str | None:
    """The trial's recorded method; for a record from before methods were recorded, the
    study's only one."""
    if record.method is not None:
        return record.method
    return methods[0] if len(methods) == 1 else None


def baselines_frame(
    baselines: Mapping[str, Evaluation],
    objective_names: Sequence[str],
    *,
    constraint_names: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per baseline, with the columns of `trials_frame` but the trial's own.

    ``method`` is the baseline's registry name and ``label`` its table label. Constraint
    columns need ``constraint_names`` (`RobustnessProblem.constraint_names`), in the order
    of ``Evaluation.constraints``.
    """
    rows = []
    for name, evaluation in baselines.items():
        head: dict[str, Any] = {
            "method": name,
            "label": BASELINES.get(name).label,
            "feasible": evaluation.feasible,
        }
        constraints = (
            dict(zip(constraint_names, evaluation.constraints, strict=True))
            if constraint_names
            else {}
        )
        rows.append(
            flat_row(
                head,
                dict(zip(objective_names, evaluation.values, strict=True)),
                constraints,
                TrialRecord.from_evaluation(evaluation),
            )
        )
    return pd.DataFrame(rows)


def flat_row(
    head: Mapping[str, Any],
    objectives: Mapping[str, float | None],
    constraints: Mapping[str, float],
    record: TrialRecord | None,
) -> dict[str, Any]:
    """One export row, for a trial and a baseline alike: ``head`` (what identifies it), the
    objective values, ``constraint[<name>]``, then the record's figures (none without one).

    Record columns: ``replication_factor``, ``latency_ms``, ``provenance``,
    ``partitioner`` (the `Partition.method` that ran: a trial's search method, a
    baseline's name), ``top1_pct[<failure set>]`` (percent, like the ``acc`` objective;
    ``no failure``, ``failed 0``, ``failed 1+3``), ``<figure>[d<device>]`` and
    ``seconds_<step>``.
    """
    row = {**head, **objectives}
    row.update({f"constraint[{name}]": value for name, value in constraints.items()})
    if record is None:
        return row
    row.update(
        replication_factor=record.replication_factor,
        latency_ms=record.latency_ms,
        provenance=record.provenance,
        partitioner=record.method,
    )
    row.update({f"top1_pct[{label}]": pct for label, pct in record.top1_pct.items()})
    for d, device in enumerate(record.devices):
        row.update({f"{key}[d{d}]": value for key, value in device.items()})
    row.update({f"seconds_{step}": seconds for step, seconds in record.seconds.items()})
    return row


def units_frame(units: Sequence[Unit], space: ThresholdSpace) -> pd.DataFrame:
    """One row per unit: its layer, and the search parameter (a column of `trials_frame`)
    that sets its threshold, with that parameter's range.

    Columns: ``unit`` (index), ``layer`` (module name), ``kind``, ``neurons``, ``param``,
    ``low``, ``high``.
    """
    if len(units) != len(space.unit_param):
        raise ValueError(
            f"`units` must be the space's {len(space.unit_param)} units, got {len(units)}."
        )
    rows = [
        {
            "unit": unit.index,
            "layer": unit.name,
            "kind": str(unit.kind),
            "neurons": unit.num_neurons,
            "param": space.names[p],
            "low": space.low[p],
            "high": space.high[p],
        }
        for unit, p in zip(units, space.unit_param, strict=True)
    ]
    return pd.DataFrame(rows, columns=list(_UNIT_COLUMNS))


def write_frame(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Write ``stem.csv`` and ``stem.parquet`` atomically; return the paths."""
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    atomic_write_bytes(csv_path, frame.to_csv(index=False).encode())
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(parquet_path, buffer.getvalue())
    return [csv_path, parquet_path]
