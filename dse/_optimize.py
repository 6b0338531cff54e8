"""`dse optimize`: run (or resume) a study of RobustDiCE threshold vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from dse._export import baselines_frame, front_trials, trials_frame, write_frame
from dse._pareto import ReferenceBox, hypervolume
from dse._problem import Evaluation, RobustnessProblem
from dse._record import TrialRecord
from dse._samplers import SAMPLERS, SamplerRequest
from dse._settings import StudySettings
from dse._study import (
    BOX_ATTR,
    StudyLock,
    check_fingerprints,
    create_study,
    load_existing,
    open_storage,
    recover_stale,
)
from robustdice_core import InvalidParameterError, RobustDiceError

__all__ = [
    "OptimizeResult",
    "PreparedStudy",
    "Progress",
    "prepare_study",
    "reference_box",
    "run_study",
]


@dataclass
class Progress:
    """What the progress display shows after every trial."""

    done: int
    target: int
    feasible: int
    front: int
    hypervolume: float
    failed: int


@dataclass
class OptimizeResult:
    study: optuna.Study
    problem: RobustnessProblem
    baselines: dict[str, Evaluation]
    box: ReferenceBox
    front: list[FrozenTrial]
    hypervolume: float
    files: list[Path] = field(default_factory=list)
    recovered: int = 0
    interrupted: bool = False


def reference_box(problem: RobustnessProblem, baselines: dict[str, Evaluation]) -> ReferenceBox:
    """Ideal and reference point from the baselines, fixed when the study is created.

    Minimised objectives: ideal = best baseline, reference = worst baseline plus a tenth of
    the baselines' spread (not 1.1 x worst: a large constant such as a runtime's memory
    would otherwise squash every difference). Maximised ones: ideal = best, reference = 0.
    """
    values = np.array([e.values for e in baselines.values()])
    maximize = tuple(o.maximize for o in problem.objectives)
    ideal, nadir = [], []
    for column, up in zip(values.T, maximize, strict=True):
        best, worst = (column.max(), column.min()) if up else (column.min(), column.max())
        spread = abs(worst - best) or abs(worst) or 1.0
        ideal.append(float(best))
        nadir.append(0.0 if up else float(worst + 0.1 * spread))
    return ReferenceBox(tuple(ideal), tuple(nadir), maximize)


@dataclass
class PreparedStudy:
    """A study opened (or created) and checked, with everything its trials need.

    Holds the study's lock when one was taken: use it as a context manager (or call
    `close`) to release the lock when the run is over.
    """

    study: optuna.Study
    problem: RobustnessProblem
    baselines: dict[str, Evaluation]  # by registry name
    box: ReferenceBox
    recovered: int
    lock: StudyLock | None = None

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> PreparedStudy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def prepare_study(
    settings: StudySettings,
    *,
    storage_url: str,
    study_name: str | None = None,
    out_dir: Path | None = None,
    problem: RobustnessProblem | None = None,
) -> PreparedStudy:
    """Check everything, cheapest first, and only then create or resume the study.

    Order: settings, storage, an existing study's settings, the out folder and the study's
    lock (all cheap), then the model, its scores and the baselines, which constraints and
    fingerprints are checked against. Nothing is written to the storage before every check
    has passed.
    """
    name = study_name or settings.default_study_name()
    storage = open_storage(storage_url)
    study = load_existing(storage, name, settings)
    lock = StudyLock(_writable_dir(out_dir) / ".lock", name) if out_dir is not None else None
    try:
        if problem is not None and problem.settings != settings:
            problem = problem.for_settings(settings)
        problem = problem or RobustnessProblem(settings)
        baselines = problem.baselines()
        problem.check_feasible(baselines)
        fingerprints = problem.fingerprints()
        if study is None:
            box = reference_box(problem, baselines)
            study = create_study(
                storage,
                name,
                settings,
                [o.direction for o in problem.objectives],
                list(settings.objectives),
                box,
                problem.space.to_dict(),
                fingerprints,
            )
            _enqueue_extremes(study, problem)
        else:
            check_fingerprints(study, fingerprints)
            box = ReferenceBox.from_dict(study.user_attrs[BOX_ATTR])
        recovered = recover_stale(study, storage)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    study.sampler = _sampler(problem, settings, offset=len(study.trials))
    return PreparedStudy(study, problem, baselines, box, recovered, lock)


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as err:
        raise InvalidParameterError(
            f"`--out` must be a writable folder; `{path}` is not ({err.strerror})."
        ) from err
    return path


def run_study(
    prepared: PreparedStudy,
    *,
    trials: int,
    out_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> OptimizeResult:
    """Run ``trials`` minus the completed ones more trials (Ctrl-C stops cleanly).

    A trial that fails with a user-level error is recorded as FAIL and the run goes on; it is
    not retried in the same run, so a rerun tops the study up.
    """
    study, problem, box = prepared.study, prepared.problem, prepared.box
    space = problem.space

    def objective(trial: Trial) -> tuple[float, ...]:
        params = [
            trial.suggest_float(n, lo, hi)
            for n, lo, hi in zip(space.names, space.low, space.high, strict=True)
        ]
        evaluation = problem.evaluate_params(params)
        for key, value in TrialRecord.from_evaluation(evaluation).to_user_attrs().items():
            trial.set_user_attr(key, value)
        for name, value in zip(problem.constraint_names, evaluation.constraints, strict=True):
            trial.set_constraint(name, value)
        return evaluation.values

    def report(study: optuna.Study, _: FrozenTrial | None = None) -> None:
        if on_progress is not None:
            on_progress(_progress(study, box, trials))

    interrupted = False
    report(study)
    try:
        study.optimize(
            objective,
            n_trials=max(0, trials - _count(study, TrialState.COMPLETE)),
            callbacks=[report],
            catch=(RobustDiceError,),
        )
    except KeyboardInterrupt:
        interrupted = True
    _, front = front_trials(study.get_trials(deepcopy=False), box)
    result = OptimizeResult(
        study=study,
        problem=problem,
        baselines=prepared.baselines,
        box=box,
        front=sorted(front, key=lambda t: t.number),
        hypervolume=_front_hypervolume(front, box),
        recovered=prepared.recovered,
        interrupted=interrupted,
    )
    if out_dir is not None:
        result.files = _export(result, out_dir)
    return result


def _enqueue_extremes(study: optuna.Study, problem: RobustnessProblem) -> None:
    """Start every new study from the two ends of the space: every threshold at its lowest
    (t = 0: full replication) and at its highest (one cluster per unit: LOP plus padding),
    so the front always spans the whole trade-off whatever the sampler."""
    space = problem.space
    for values in (space.low, space.high):
        study.enqueue_trial(dict(zip(space.names, values, strict=True)))


def _sampler(
    problem: RobustnessProblem, settings: StudySettings, *, offset: int
) -> optuna.samplers.BaseSampler:
    """Optuna does not store samplers: rebuild it from the study's settings on every run.

    The seed is offset by the number of trials already in the study so that a resumed study
    does not replay the random draws of its first run.
    """
    space = problem.space
    request = SamplerRequest(
        seed=settings.seed + offset,
        space={n: (lo, hi) for n, lo, hi in zip(space.names, space.low, space.high, strict=True)},
        n_objectives=len(problem.objectives),
        constraint_names=tuple(problem.constraint_names),
        population_size=settings.population,
    )
    return SAMPLERS.get(settings.sampler)(request)


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _progress(study: optuna.Study, box: ReferenceBox, target: int) -> Progress:
    trials = study.get_trials(deepcopy=False)
    feasible, front = front_trials(trials, box)
    return Progress(
        done=sum(t.state == TrialState.COMPLETE for t in trials),
        target=target,
        feasible=len(feasible),
        front=len(front),
        hypervolume=_front_hypervolume(front, box),
        failed=sum(t.state == TrialState.FAIL for t in trials),
    )


def _front_hypervolume(front: list[FrozenTrial], box: ReferenceBox) -> float:
    return hypervolume(np.array([t.values for t in front]), box) if front else 0.0


def _export(result: OptimizeResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(result.problem.settings.objectives)
    return write_frame(trials_frame(result.study, result.box), out_dir / "trials") + write_frame(
        baselines_frame(result.baselines, names), out_dir / "baselines"
    )
