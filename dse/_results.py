"""A finished (or running) study read back from its storage, without loading the model:
what `dse pareto`, `dse report` and `dse deploy` work from."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from dse._export import front_trials
from dse._pareto import FrontChange, ReferenceBox, front_change
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
    "MEASURED_ATTR",
    "MEASURED_OBJECTIVES",
    "BaselineResult",
    "Measurement",
    "StudySnapshot",
    "latest_study_name",
    "load_snapshot",
    "measured_value",
    "pareto_payload",
    "stored_measurements",
    "trial_measurement",
    "with_measurement",
]


MEASURED_ATTR = "measured"  # the key under which a read-back trial carries its measurement
_MEASURED_PREFIX = "robustdice:measured:"  # study attrs: + "trial:<n>" or "baseline:<name>"


@dataclass(frozen=True)
class Measurement:
    """One trial's or baseline's run on the local runtime (`dse measure`), with provenance.

    Optuna never updates a finished trial, so measurements live in the study's user
    attributes (one key per subject, `Measurement.attr_key`); `load_snapshot` hands each
    trial back with it under ``user_attrs["measured"]``.
    """

    subject: str  # "trial:7" or "baseline:lop"
    fps: float
    latency_median_s: float
    latency_p90_s: float
    peak_rss_mb: float | None  # largest node's peak RSS (the process, torch included)
    energy_j: float | None  # largest node's J/image, only from a real meter
    energy_source: str  # e.g. "measured:rapl", or why there is none
    estimated: dict[str, float]  # the cost model's figures for the same partition
    link: str  # the link as the runtime emulated it
    images: int
    in_flight: int
    num_devices: int
    host: str
    date: str  # ISO time
    tool_version: str
    notes: tuple[str, ...] = ()
    lost: int = 0  # images never answered (timed out on a loaded machine); FPS counts the rest

    @property
    def label(self) -> str:
        kind, name = self.subject.split(":", 1)
        return f"#{name}" if kind == "trial" else name

    @property
    def attr_key(self) -> str:
        return _MEASURED_PREFIX + self.subject

    @property
    def provenance(self) -> str:
        return (
            f"measured: local runtime, {self.num_devices} nodes on {self.host}, link "
            f"{self.link}, {self.images} images, {self.in_flight} in flight, {self.date}, "
            f"robustdice-dse {self.tool_version}; energy {self.energy_source}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["provenance"] = self.provenance  # for whoever reads the storage directly
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        try:
            values = {f: data[f] for f in cls.__dataclass_fields__ if f not in ("notes", "lost")}
        except KeyError as err:
            raise InvalidParameterError(
                f"a stored measurement lacks `{err.args[0]}`; measure it again (`dse measure`)."
            ) from None
        return cls(**values, notes=tuple(data.get("notes", ())), lost=int(data.get("lost", 0)))


def _rss(m: Measurement) -> float | None:
    return m.peak_rss_mb


# objective -> its measured value (None: not measured; the objective stays estimated)
MEASURED_OBJECTIVES: dict[str, Callable[[Measurement], float | None]] = {
    "fps": lambda m: m.fps,
    "latency": lambda m: 1e3 * m.latency_median_s,
    "mem": _rss,
    "energy": lambda m: m.energy_j,
}


def measured_value(objective: str, measurement: Measurement | None) -> float:
    """The measured value of ``objective`` (NaN where it was not or cannot be measured)."""
    read = MEASURED_OBJECTIVES.get(objective)
    value = None if read is None or measurement is None else read(measurement)
    return math.nan if value is None else float(value)


def stored_measurements(attrs: Mapping[str, Any]) -> dict[str, Measurement]:
    """Every measurement in a study's user attributes, by subject."""
    found = (
        Measurement.from_dict(value)
        for key, value in attrs.items()
        if key.startswith(_MEASURED_PREFIX)
    )
    return {m.subject: m for m in found}


def with_measurement(trial: FrozenTrial, measurement: Measurement | None) -> FrozenTrial:
    """A copy of ``trial`` carrying ``measurement`` under ``user_attrs["measured"]``."""
    if measurement is None:
        return trial
    out = copy.copy(trial)
    out.user_attrs = {**trial.user_attrs, MEASURED_ATTR: measurement.to_dict()}
    return out


def trial_measurement(trial: FrozenTrial) -> Measurement | None:
    data = trial.user_attrs.get(MEASURED_ATTR)
    return None if data is None else Measurement.from_dict(data)


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's objective values, constraints and record, as stored with the study."""

    name: str
    values: tuple[float, ...]
    constraints: dict[str, float]
    record: TrialRecord | None
    measured: Measurement | None = None

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
    measurements: dict[str, Measurement] = field(default_factory=dict)

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

    def front_change(self) -> FrontChange:
        """Which front trials leave, and which measured trials enter, when measured values
        replace the estimates (for the objectives every candidate has measured)."""
        candidates = sorted(
            {t.number for t in self.front}
            | {t.number for t in self.feasible if trial_measurement(t) is not None}
        )
        by_number = {t.number: t for t in self.trials}
        trials = [by_number[n] for n in candidates]
        measured = [
            [measured_value(o, trial_measurement(t)) for o in self.objectives] for t in trials
        ]
        return front_change(
            candidates,
            [list(t.values) for t in trials],
            measured,
            self.objectives,
            self.box.maximize,
            {t.number for t in self.front},
        )


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
    measurements = stored_measurements(attrs)
    trials = tuple(
        with_measurement(t, measurements.get(f"trial:{t.number}"))
        for t in study.get_trials(deepcopy=False)
    )
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
            key: replace(
                BaselineResult.from_attr(key, value),
                measured=measurements.get(f"baseline:{key}"),
            )
            for key, value in attrs.get(BASELINES_ATTR, {}).items()
        },
        fingerprints=dict(attrs[FINGERPRINTS_ATTR]),
        measurements=measurements,
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
            **_measured_entry(trial_measurement(trial)),
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
                **_measured_entry(b.measured),
            }
            for name, b in snapshot.baselines.items()
        },
    }
    if snapshot.measurements:
        payload["measured_front"] = snapshot.front_change()._asdict()
    if chosen is not None:
        payload["pick"] = {"rule": rule, "trial": chosen.number}
    return payload


def _measured_entry(measurement: Measurement | None) -> dict[str, Any]:
    return {} if measurement is None else {"measured": measurement.to_dict()}
