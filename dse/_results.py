"""A finished (or running) study read back from its storage, without loading the model:
what `dse pareto`, `dse report` and `dse deploy` work from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from dse._export import front_trials
from dse._pareto import ReferenceBox
from dse._pick import pick_trial
from dse._record import TrialRecord
from dse._settings import StudySettings
from dse._study import (
    BASELINES_ATTR,
    BOX_ATTR,
    CREATED_ATTR,
    FINGERPRINTS_ATTR,
    SETTINGS_ATTR,
    SPACE_ATTR,
    check_study_name,
    open_storage,
)
from robustdice_core import InvalidParameterError

if TYPE_CHECKING:
    from dse._problem import Evaluation

__all__ = [
    "BaselineResult",
    "StudySnapshot",
    "latest_study_name",
    "load_snapshot",
    "pareto_payload",
]


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's objective values, constraints and record, as stored with the study."""

    name: str
    values: tuple[float, ...]
    constraints: dict[str, float]
    record: TrialRecord | None

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def to_attr(self) -> dict[str, Any]:
        return {
            "values": list(self.values),
            "constraints": dict(self.constraints),
            "record": self.record.to_user_attrs() if self.record is not None else None,
        }

    @property
    def replication_factor(self) -> float:
        return self.record.replication_factor if self.record is not None else float("nan")

    @classmethod
    def from_evaluation(
        cls, name: str, evaluation: Evaluation, constraint_names: Sequence[str]
    ) -> BaselineResult:
        return cls(
            name=name,
            values=tuple(evaluation.values),
            constraints=dict(zip(constraint_names, evaluation.constraints, strict=True)),
            record=TrialRecord.from_evaluation(evaluation),
        )

    @classmethod
    def from_attr(cls, name: str, data: dict[str, Any]) -> BaselineResult:
        record = data.get("record")
        return cls(
            name=name,
            values=tuple(float(v) for v in data["values"]),
            constraints={str(k): float(v) for k, v in data.get("constraints", {}).items()},
            record=TrialRecord.from_user_attrs(record) if record else None,
        )


@dataclass(frozen=True)
class StudySnapshot:
    """Everything a report or a deployment needs to know about a study."""

    name: str
    storage_url: str
    settings: StudySettings
    objectives: tuple[str, ...]
    box: ReferenceBox
    space: dict[str, Any]
    trials: tuple[FrozenTrial, ...]
    feasible: tuple[FrozenTrial, ...]
    front: tuple[FrozenTrial, ...]
    baselines: dict[str, BaselineResult]
    fingerprints: dict[str, str]

    def trial(self, number: int) -> FrozenTrial:
        """The trial ``number`` of this study; an error names the valid range."""
        for trial in self.trials:
            if trial.number == number:
                return trial
        last = len(self.trials) - 1
        raise InvalidParameterError(
            f"`--trial {number}` does not exist in study `{self.name}` (trials 0..{last})."
        )

    def pick(self, rule: str) -> FrozenTrial:
        return pick_trial(self.front, self.objectives, self.box, rule)


def load_snapshot(storage_url: str, study_name: str | None = None) -> StudySnapshot:
    """Read a study created by `dse optimize` (the most recent one when no name is given)."""
    storage = open_storage(storage_url)
    name = latest_study_name(storage, storage_url) if study_name is None else study_name
    check_study_name(name)
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        raise InvalidParameterError(
            f"study `{name}` does not exist in `{storage_url}`; `dse pareto --storage "
            f"{storage_url}` with no name uses the most recent study."
        )
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = study.user_attrs
    if not all(k in attrs for k in (SETTINGS_ATTR, BOX_ATTR, SPACE_ATTR, FINGERPRINTS_ATTR)):
        raise InvalidParameterError(
            f"study `{name}` in `{storage_url}` was not made by `dse optimize` (or its "
            "creation was cut short); rerun `dse optimize` for it first."
        )
    box = ReferenceBox.from_dict(attrs[BOX_ATTR])
    trials = tuple(study.get_trials(deepcopy=False))
    feasible, front = front_trials(trials, box)
    return StudySnapshot(
        name=name,
        storage_url=storage_url,
        settings=StudySettings.from_dict(attrs[SETTINGS_ATTR]),
        objectives=tuple(study.metric_names or ()),
        box=box,
        space=dict(attrs[SPACE_ATTR]),
        trials=trials,
        feasible=tuple(feasible),
        front=tuple(sorted(front, key=lambda t: t.number)),
        baselines={
            key: BaselineResult.from_attr(key, value)
            for key, value in attrs.get(BASELINES_ATTR, {}).items()
        },
        fingerprints=dict(attrs[FINGERPRINTS_ATTR]),
    )


def latest_study_name(storage: optuna.storages.BaseStorage, storage_url: str) -> str:
    """The study of ours created last in ``storage``."""
    ours = []
    for summary in optuna.get_all_study_summaries(storage):
        attrs = summary.user_attrs
        if SETTINGS_ATTR in attrs and FINGERPRINTS_ATTR in attrs:
            ours.append((str(attrs.get(CREATED_ATTR, "")), summary.study_name))
    if not ours:
        raise InvalidParameterError(
            f"no study made by `dse optimize` in `{storage_url}`; run `dse optimize` first or "
            "pass `--storage`."
        )
    return max(ours)[1]


def pareto_payload(
    snapshot: StudySnapshot, chosen: FrozenTrial | None = None, rule: str | None = None
) -> dict[str, Any]:
    """The front as plain JSON data (`dse pareto --json`)."""

    def row(trial: FrozenTrial) -> dict[str, Any]:
        record = TrialRecord.from_trial(trial)
        return {
            "trial": trial.number,
            "values": dict(zip(snapshot.objectives, trial.values, strict=True)),
            "replication_factor": record.replication_factor if record else None,
            "params": dict(trial.params),
        }

    payload: dict[str, Any] = {
        "study": snapshot.name,
        "storage": snapshot.storage_url,
        "objectives": list(snapshot.objectives),
        "trials": len(snapshot.trials),
        "front": [row(t) for t in snapshot.front],
        "baselines": {
            name: {
                "values": dict(zip(snapshot.objectives, b.values, strict=True)),
                "replication_factor": b.replication_factor,
                "feasible": b.feasible,
            }
            for name, b in snapshot.baselines.items()
        },
    }
    if chosen is not None:
        payload["pick"] = {"rule": rule, "trial": chosen.number}
    return payload
