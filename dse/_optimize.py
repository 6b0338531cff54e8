"""`dse optimize`: run (or resume) a study of RobustDiCE threshold vectors."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.exceptions import DuplicatedStudyError
from optuna.trial import FrozenTrial, Trial, TrialState

from dse._export import baselines_frame, front_trials, trials_frame, units_frame, write_frame
from dse._journal import storage_notes
from dse._pareto import ReferenceBox, hypervolume
from dse._problem import Evaluation, RobustnessProblem
from dse._record import FAIL_REASON_ATTR, TrialRecord, is_feasible, record_constraints
from dse._results import BaselineResult
from dse._samplers import SAMPLERS, SamplerRequest
from dse._settings import MAX_SEED, StudySettings
from dse._study import (
    BASELINES_ATTR,
    BOX_ATTR,
    UID_ATTR,
    StorageKind,
    StudyLock,
    check_fingerprints,
    check_out_dir,
    check_study_name,
    claim_out_dir,
    create_study,
    load_existing,
    open_storage,
    recover_stale,
)
from dse._workers import (
    INTERRUPTED_EXIT,
    POLL_S,
    TrialBudget,
    WorkerPool,
    WorkerSpec,
    check_workers,
    parent_gone,
    run_trials,
)
from robustdice_core import InvalidParameterError, RobustDiceError

__all__ = [
    "OptimizeResult",
    "PreparedStudy",
    "Progress",
    "make_objective",
    "prepare_study",
    "racing_front",
    "reference_box",
    "run_study",
    "work",
]

SETTLE_S = 10.0  # how long a study that another machine is creating is given to be complete


@dataclass
class Progress:
    """What the progress display shows after every trial."""

    done: int
    target: int
    feasible: int
    front: int
    hypervolume: float
    failed: int
    running: int = 0  # trials running now, in any process
    workers: int = 0  # worker processes alive (0: trials run in this process)


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
    completed: int = 0  # COMPLETE trials in the study
    failures: list[str] = field(default_factory=list)  # why trials of this run failed
    lost_workers: list[str] = field(default_factory=list)  # workers that died, one line each

    @property
    def baseline_results(self) -> dict[str, BaselineResult]:
        names = self.problem.constraint_names
        return {k: BaselineResult.from_evaluation(k, e, names) for k, e in self.baselines.items()}


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
    out_dir: Path | None = None  # where the exports go (out_root/<study>)
    notes: list[str] = field(default_factory=list)  # e.g. what a journal repair recovered
    storage_url: str = ":memory:"  # where worker processes find the study

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
    out_root: Path | None = None,
    problem: RobustnessProblem | None = None,
) -> PreparedStudy:
    """Check everything, cheapest first, and only then create, resume or join the study.

    Order: the study name, the storage, the study's lock (`StudyLock`: a study in SQLite
    runs in one process at a time; other processes join a study in a journal or a database
    server), an existing study's settings and its export folder ``out_root/<study>`` (all
    cheap), then the model, its scores and the baselines, which constraints and fingerprints
    are checked against. Nothing is written to the storage or the export folder before every
    check has passed. The study is created here, once, before any worker process starts.
    """
    name = check_study_name(settings.default_study_name() if study_name is None else study_name)
    kind = StorageKind.of(storage_url)
    storage = open_storage(storage_url, heartbeat=True)
    notes = storage_notes(storage)
    lock = StudyLock.for_study(storage_url, name)
    alone = _take_lock(lock, kind)
    try:
        settle_s = SETTLE_S if kind is StorageKind.SERVER else 0.0
        study = load_existing(storage, name, settings, settle_s=settle_s)
        out_dir = None
        if out_root is not None:
            out_dir = writable_dir(out_root / name, "--out")
            check_out_dir(out_dir, storage_url, name, _uid(study))
        if problem is not None and problem.settings != settings:
            problem = problem.for_settings(settings)
        problem = problem or RobustnessProblem(settings)
        baselines = problem.baselines()
        problem.check_feasible(baselines)
        fingerprints = problem.fingerprints()
        if study is None:
            study = _create(storage, name, settings, problem, baselines, fingerprints)
        if study is None:  # another machine created it first: join it
            study = load_existing(storage, name, settings, settle_s=SETTLE_S)
        if study is None:
            raise InvalidParameterError(
                f"study `{name}` was created and deleted by another process meanwhile; rerun."
            )
        check_fingerprints(study, fingerprints)
        box = ReferenceBox.from_dict(study.user_attrs[BOX_ATTR])
        if BASELINES_ATTR not in study.user_attrs:  # what reports and deploys compare with
            stored = {
                key: BaselineResult.from_evaluation(key, e, problem.constraint_names).to_attr()
                for key, e in baselines.items()
            }
            study.set_user_attr(BASELINES_ATTR, stored)
        if out_dir is not None:
            claim_out_dir(out_dir, storage_url, name, _uid(study))
        recovered = recover_stale(study, storage) if alone and kind.lock_sees_all else 0
        if lock is not None and kind.shared:
            lock.shared()  # from now on, other processes may join
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    study.sampler = _sampler(problem, settings, offset=_seed_offset(study, kind, alone))
    return PreparedStudy(
        study, problem, baselines, box, recovered, lock, out_dir, notes, storage_url
    )


def _seed_offset(study: optuna.Study, kind: StorageKind, alone: bool) -> int:
    """The number of trials so far (a resumed study does not replay its first draws), plus a
    random number where other processes may run the study too: two samplers with one seed
    would propose the same points."""
    if alone and kind is not StorageKind.SERVER:  # no one else runs it, nor can join unseen
        return len(study.trials)
    return len(study.trials) + secrets.randbelow(MAX_SEED)


def _take_lock(lock: StudyLock | None, kind: StorageKind) -> bool:
    """Whether this process holds the study's lock alone (exclusively, for now); in SQLite
    a study held by another process is refused, elsewhere this process joins it."""
    if lock is None:
        return True
    if lock.exclusive():
        return True
    if not kind.shared:
        lock.release()
        raise lock.refuse()
    lock.shared()
    return False


def _create(
    storage: optuna.storages.BaseStorage,
    name: str,
    settings: StudySettings,
    problem: RobustnessProblem,
    baselines: dict[str, Evaluation],
    fingerprints: dict[str, str],
) -> optuna.Study | None:
    """A new study, started from both ends of the space; None if another process created
    one of that name first."""
    try:
        study = create_study(
            storage,
            name,
            settings,
            [o.direction for o in problem.objectives],
            list(settings.objectives),
            reference_box(problem, baselines),
            problem.search.to_dict(),
            fingerprints,
        )
    except DuplicatedStudyError:
        return None
    _enqueue_extremes(study, problem)
    return study


def _uid(study: optuna.Study | None) -> str | None:
    return None if study is None else study.user_attrs.get(UID_ATTR)


def writable_dir(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove it writable with a real file (as root, access
    checks say yes to everything), before any work that would write there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise InvalidParameterError(
            f"`{flag}` must be a writable folder; `{path}` is not ({err.strerror or err})."
        ) from err
    return path


def make_objective(problem: RobustnessProblem) -> Callable[[Trial], tuple[float, ...]]:
    """One trial: suggest every parameter (in a mixed study the method switch and every
    method's), evaluate (raced against the study's front when the study races), record the
    trial's figures and the method it ran."""
    bounds = problem.search.bounds()

    def objective(trial: Trial) -> tuple[float, ...]:
        params = {n: trial.suggest_float(n, lo, hi) for n, (lo, hi) in bounds.items()}
        front = partial(racing_front, trial.study) if problem.race is not None else None
        try:
            evaluation = problem.evaluate_params(params, front=front)
        except RobustDiceError as err:  # Optuna records FAIL but not why: keep the message
            trial.set_user_attr(FAIL_REASON_ATTR, str(err))
            raise
        for key, value in TrialRecord.from_evaluation(evaluation).to_user_attrs().items():
            trial.set_user_attr(key, value)
        record_constraints(trial, evaluation.constraints)
        return evaluation.values

    return objective


def racing_front(study: optuna.Study) -> np.ndarray:
    """Objective values ``[n, objectives]`` of the study's fully evaluated feasible trials,
    in every process: what a raced trial must be able to reach."""
    values = [
        t.values
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if is_feasible(t) and not _raced_out(t)
    ]
    return np.array(values, dtype=float).reshape(len(values), len(study.directions))


def _raced_out(trial: FrozenTrial) -> bool:
    record = TrialRecord.from_trial(trial)
    return record is not None and record.raced_out


def run_study(
    prepared: PreparedStudy,
    *,
    trials: int,
    workers: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
) -> OptimizeResult:
    """Run trials until the study has ``trials`` COMPLETE ones (Ctrl-C stops cleanly: the
    result says ``interrupted`` and every completed trial is kept), then export to
    ``prepared.out_dir`` if it has one.

    With ``workers`` > 1, that many worker processes run the trials (`work`) and this one
    shows their progress. Other processes, here or on other machines, may run the same
    study at the same time (`dse._workers.TrialBudget`).

    A trial that fails with a user-level error is recorded as FAIL and the run goes on; it is
    not retried in the same run, so a rerun tops the study up.
    """
    check_workers(workers, prepared.storage_url)
    study, box = prepared.study, prepared.box

    def report(study: optuna.Study, _: FrozenTrial | None = None, *, workers: int = 0) -> None:
        if on_progress is not None:
            on_progress(_progress(study, box, trials, workers=workers))

    interrupted, lost = False, []
    first_new = len(study.trials)
    report(study)
    try:
        if workers == 1:
            _run_here(prepared, trials, report)
        else:
            lost = _run_workers(prepared, trials, workers, report)
    except KeyboardInterrupt:
        interrupted = True
    result = _result(prepared, interrupted, first_new)
    result.lost_workers = lost
    if prepared.out_dir is not None:
        result.files = _export(result, prepared.out_dir)
    return result


def _run_here(prepared: PreparedStudy, trials: int, report: Callable[..., None]) -> None:
    budget = TrialBudget(trials)
    run_trials(
        prepared.study,
        make_objective(prepared.problem),
        budget,
        attempts=max(0, trials - budget.complete(prepared.study)),
        callbacks=[report],
        catch=(RobustDiceError,),
        on_wait=report,
    )


def _run_workers(
    prepared: PreparedStudy,
    trials: int,
    workers: int,
    report: Callable[..., None],
) -> list[str]:
    """Start the workers, show their progress until they exit; the lost ones, one line each."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    salt = secrets.randbelow(MAX_SEED)  # each worker, and each machine, draws its own
    specs = [
        WorkerSpec(
            settings=prepared.problem.settings,
            storage_url=prepared.storage_url,
            study_name=prepared.study.study_name,
            trials=trials,
            index=index,
            threads=threads,
            seed_offset=salt + index,
        )
        for index in range(workers)
    ]
    pool = WorkerPool.start(work, specs)
    try:
        while pool.alive():
            pool.wait(POLL_S)
            report(prepared.study, workers=pool.alive())
    except KeyboardInterrupt:
        pool.interrupt()
        raise
    return pool.lost()


def work(spec: WorkerSpec) -> None:
    """The body of one worker process: load the study (created by the parent), build the
    problem (scores come from the disk cache), run trials; exit 130 on Ctrl-C."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(spec.threads)
    try:
        _work(spec)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback
        sys.exit(INTERRUPTED_EXIT)


def _work(spec: WorkerSpec) -> None:
    lock = StudyLock.for_study(spec.storage_url, spec.study_name)
    if lock is not None:
        lock.shared()  # a process that finds the lock free knows no worker runs
    try:
        storage = open_storage(spec.storage_url, heartbeat=True)
        study = optuna.load_study(study_name=spec.study_name, storage=storage)
        budget = TrialBudget(spec.trials)
        if budget.reached(study):
            return
        problem = RobustnessProblem(spec.settings)
        offset = len(study.trials) + spec.seed_offset
        study.sampler = _sampler(problem, spec.settings, offset=offset)
        run_trials(
            study,
            make_objective(problem),
            budget,
            attempts=max(0, spec.trials - budget.complete(study)),
            catch=(RobustDiceError,),
            should_stop=parent_gone,  # the `dse optimize` that started it was killed
        )
    finally:
        if lock is not None:
            lock.release()


def _result(prepared: PreparedStudy, interrupted: bool, first_new: int) -> OptimizeResult:
    every = prepared.study.get_trials(deepcopy=False)
    # Optuna's retry records every trial it repeats (`RetryHeartbeatStaleTrialCallback`)
    retried = {n for t in every for n in t.system_attrs.get("retry_history", ())}
    _, front = front_trials(every, prepared.box)
    return OptimizeResult(
        study=prepared.study,
        problem=prepared.problem,
        baselines=prepared.baselines,
        box=prepared.box,
        front=sorted(front, key=lambda t: t.number),
        hypervolume=_front_hypervolume(front, prepared.box),
        recovered=prepared.recovered,
        interrupted=interrupted,
        completed=sum(t.state == TrialState.COMPLETE for t in every),
        failures=[
            _fail_reason(t, retried)
            for t in every
            if t.state == TrialState.FAIL and t.number >= first_new
        ],
    )


def _fail_reason(trial: FrozenTrial, retried: set[int]) -> str:
    if FAIL_REASON_ATTR in trial.user_attrs:
        return str(trial.user_attrs[FAIL_REASON_ATTR])
    if trial.number in retried:
        return f"trial {trial.number}: its process died; its parameters ran again"
    return "interrupted or unknown"


def _enqueue_extremes(study: optuna.Study, problem: RobustnessProblem) -> None:
    """Start every new study from the two ends of the space: every threshold at its lowest
    (t = 0: full replication) and at its highest (one cluster per unit: LOP plus padding),
    so the front always spans the whole trade-off whatever the sampler; in a mixed study,
    both ends of every method (`SearchSpace.extremes`)."""
    for point in problem.search.extremes():
        study.enqueue_trial(point)


def _sampler(
    problem: RobustnessProblem, settings: StudySettings, *, offset: int
) -> optuna.samplers.BaseSampler:
    """Optuna does not store samplers: rebuild it from the study's settings on every run.

    The seed is offset by the number of trials already in the study so that a resumed study
    does not replay the random draws of its first run.
    """
    request = SamplerRequest(
        seed=(settings.seed + offset) % (MAX_SEED + 1),
        space=problem.search.bounds(),
        n_objectives=len(problem.objectives),
        constraint_names=tuple(problem.constraint_names),
        population_size=settings.population,
    )
    return SAMPLERS.get(settings.sampler)(request)


def _progress(
    study: optuna.Study, box: ReferenceBox, target: int, *, workers: int = 0
) -> Progress:
    trials = study.get_trials(deepcopy=False)
    feasible, front = front_trials(trials, box)
    return Progress(
        done=sum(t.state == TrialState.COMPLETE for t in trials),
        target=target,
        feasible=len(feasible),
        front=len(front),
        hypervolume=_front_hypervolume(front, box),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        workers=workers,
    )


def _front_hypervolume(front: list[FrozenTrial], box: ReferenceBox) -> float:
    return hypervolume(np.array([t.values for t in front]), box) if front else 0.0


def _export(result: OptimizeResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    problem = result.problem
    baselines = baselines_frame(
        result.baselines,
        list(problem.settings.objectives),
        constraint_names=problem.constraint_names,
    )
    return (
        write_frame(trials_frame(result.study, result.box), out_dir / "trials")
        + write_frame(baselines, out_dir / "baselines")
        + write_frame(
            pd.concat(
                [units_frame(problem.bench.net.units, m.space) for m in problem.search.methods],
                ignore_index=True,
            ),
            out_dir / "units",
        )
    )
