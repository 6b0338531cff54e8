"""Many processes, one study: the trial budget they share, their loop, and worker processes.

Every process that runs a study (the one of `dse optimize`, each of its `--workers`, those
of the same command on other machines) loads the study from the shared storage and runs
`study.optimize` under a `TrialBudget`: together they stop at exactly ``--trials`` COMPLETE
trials. Optuna's ``MaxTrialsCallback(n, states=(COMPLETE,))`` alone would stop each process
after its own trial once n are complete, so the trials still running elsewhere would add
up to K - 1 more; the budget counts running and queued trials too, in trial-number order.
A dead process's trial stays RUNNING (and counted) until the heartbeats fail it; then its
retry takes its place (`dse._heartbeat`).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

from dse._heartbeat import RetryStaleTrial, fail_stale_trials
from dse._samplers import DEFAULT_SAMPLER
from dse._settings import StudySettings
from dse._study import StorageKind
from robustdice_core import InvalidParameterError

__all__ = [
    "INTERRUPTED_EXIT",
    "PARALLEL_SAMPLER",
    "WORKER_ATTR",
    "TrialBudget",
    "WorkerPool",
    "WorkerSpec",
    "check_workers",
    "default_sampler",
    "fail_orphans",
    "parent_gone",
    "run_trials",
    "worker_name",
]

WORKER_ATTR = "worker"  # on a trial: "<host>/<pid>" of the process that ran it
# TPE with the constant liar (running trials count as bad results, so parallel workers do
# not sample the same region) needs a few ms per trial; see docs/dse.md, "Scale out".
PARALLEL_SAMPLER = "tpe"
POLL_S = 1.0  # how often a waiting process looks at the study again
ORPHAN_S = 600.0  # a trial whose objective never started this long after its start is dead
INTERRUPTED_EXIT = 130
MAX_WORKERS = 64  # processes on one machine, each with its own model in memory
_COUNTED = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)

Objective = Callable[[Trial], Sequence[float]]
StudyCallback = Callable[[optuna.Study, FrozenTrial], None]


def default_sampler(workers: int) -> str:
    """The sampler of a new study when `--sampler` is not given."""
    return DEFAULT_SAMPLER if workers == 1 else PARALLEL_SAMPLER


def check_workers(workers: int, storage_url: str) -> None:
    """1 <= K <= MAX_WORKERS, and K > 1 only on a storage that processes can share."""
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidParameterError(
            f"`--workers` must be in 1..{MAX_WORKERS} (processes on this machine), "
            f"got {workers}."
        )
    kind = StorageKind.of(storage_url)
    if workers > 1 and not kind.shared:
        what = "SQLite, one process per study" if kind is StorageKind.SQLITE else "in memory"
        raise InvalidParameterError(
            f"`--workers {workers}` needs a storage that processes share, and `{storage_url}` "
            f"is {what}; pass a journal file (`--storage dse-runs/studies.log`, one machine) "
            "or a database server (`--storage postgresql://user@host/db`, many machines)."
        )


def worker_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True)
class TrialBudget:
    """``trials`` COMPLETE trials in the study, however many processes run it.

    The budget's places go to trials in number order: a trial may run only while fewer than
    ``trials`` trials with smaller numbers are COMPLETE, RUNNING or WAITING. So at most
    ``trials`` of them complete (each completed one had every earlier completed one ahead of
    it), and a failed trial frees its place for a later one. Used as an Optuna callback it
    stops `study.optimize` when the next trial would get no place.
    """

    trials: int

    def complete(self, study: optuna.Study) -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def reached(self, study: optuna.Study) -> bool:
        return self.complete(study) >= self.trials

    def admits(self, study: optuna.Study, number: int) -> bool:
        """Whether trial ``number`` has a place."""
        counted = study.get_trials(deepcopy=False, states=_COUNTED)
        return sum(t.number < number for t in counted) < self.trials

    def has_place(self, study: optuna.Study) -> bool:
        """Whether the next `study.ask` would get a trial with a place: the oldest WAITING
        trial (Optuna hands those out first), else a new one."""
        counted = study.get_trials(deepcopy=False, states=_COUNTED)
        waiting = [t.number for t in counted if t.state == TrialState.WAITING]
        if waiting:
            return sum(t.number < min(waiting) for t in counted) < self.trials
        return len(counted) < self.trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self.has_place(study):
            study.stop()


def run_trials(
    study: optuna.Study,
    objective: Objective,
    budget: TrialBudget,
    *,
    attempts: int,
    callbacks: Sequence[StudyCallback] = (),
    catch: tuple[type[Exception], ...] = (),
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[optuna.Study], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run trials until the study meets ``budget``, this process has made ``attempts`` (so
    trials that keep failing end the run: a rerun tops the study up) or ``should_stop``.

    When every place is taken by trials running elsewhere, wait for them (``on_wait`` is
    called each time), failing those whose heartbeat stopped (their retry gets the place).
    """
    made = 0
    runner = _Runner(objective, budget, worker_name())

    def count(study: optuna.Study, _: FrozenTrial) -> None:
        nonlocal made
        made += 1
        if made >= attempts or should_stop():
            study.stop()

    while made < attempts and not should_stop() and not budget.reached(study):
        if not budget.has_place(study):
            fail_stale_trials(study)
            fail_orphans(study)
            if budget.has_place(study):
                continue  # a dead trial's retry is queued: run it now
            if on_wait is not None:
                on_wait(study)
            sleep(POLL_S * random.uniform(0.5, 1.5))  # waiting processes wake at other times
            continue
        try:
            study.optimize(runner, callbacks=[count, budget, *callbacks], catch=catch)
        except Exception as err:  # Optuna fails to record a trial finished by another
            # process in more than one way (ValueError, AssertionError, ...): ask the study
            if err is runner.error or not runner.taken_over(study):
                raise  # a real error, not our trial failed as stale by another process
            made += 1


def fail_orphans(study: optuna.Study, *, clock: Callable[[], float] = time.time) -> int:
    """Fail (and retry) RUNNING trials that never reached the objective (no `WORKER_ATTR`)
    within `ORPHAN_S`: their process died while Optuna created the trial and the sampler
    proposed its parameters, before Optuna's heartbeat thread starts, so no heartbeat will
    ever show them stale, and each would hold a place of the budget for good."""
    now = clock()
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if WORKER_ATTR not in t.user_attrs
        and t.datetime_start is not None
        and now - t.datetime_start.timestamp() > ORPHAN_S
    ]
    retry = RetryStaleTrial()
    for trial in orphans:
        try:  # Optuna's storage call, as `fail_stale_trials` makes it (the id is private)
            if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                retry(study, study._storage.get_trial(trial._trial_id))
        except UpdateFinishedTrialError:
            continue  # another process failed it first
    return len(orphans)


class _Runner:
    """The objective as run under the budget: a trial without a place is pruned (an
    enqueued one queued again), the others record their worker and run ``objective``."""

    def __init__(self, objective: Objective, budget: TrialBudget, worker: str) -> None:
        self._objective, self._budget, self._worker = objective, budget, worker
        self.number: int | None = None  # the trial being run
        self.error: Exception | None = None  # what the objective raised, if anything

    def __call__(self, trial: Trial) -> Sequence[float]:
        self.number, self.error = trial.number, None
        if not self._budget.admits(trial.study, trial.number):
            _give_back(trial)
            raise optuna.TrialPruned(f"the study has its {self._budget.trials} trials")
        try:
            trial.set_user_attr(WORKER_ATTR, self._worker)
            return self._objective(trial)
        except UpdateFinishedTrialError:
            raise  # our trial was finished by another process: see `taken_over`
        except Exception as err:
            self.error = err
            raise

    def taken_over(self, study: optuna.Study) -> bool:
        """Whether another process failed our trial as stale while it ran (its heartbeat was
        late): Optuna then cannot record our result, and the trial's retry runs elsewhere."""
        trial = [t for t in study.get_trials(deepcopy=False) if t.number == self.number]
        return bool(trial) and trial[0].state.is_finished()


def _give_back(trial: Trial) -> None:
    """A trial without a place that brought its own parameters (enqueued: an end of the
    space, a retry) is queued again, so they are not lost."""
    counted = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    (frozen,) = [t for t in counted if t.number == trial.number]
    params = frozen.system_attrs.get("fixed_params") or frozen.params
    if params:
        trial.study.enqueue_trial(dict(params), user_attrs=dict(frozen.user_attrs))


def parent_gone() -> bool:
    """In a worker process: whether the process that started it has died."""
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process needs to load the study and run it (picklable)."""

    settings: StudySettings
    storage_url: str
    study_name: str
    trials: int
    index: int
    threads: int
    seed_offset: int


class WorkerPool:
    """K worker processes, each running ``target(spec)``.

    Started by the forkserver method: one fresh server process imports ``target``'s module
    (torch, the models) once, before any thread exists, and forks each worker from itself;
    nothing is forked from this process (its threads and loaded model stay here).
    """

    def __init__(self, processes: list[BaseProcess]) -> None:
        self._processes = processes

    @classmethod
    def start(
        cls, target: Callable[[WorkerSpec], Any], specs: Sequence[WorkerSpec]
    ) -> WorkerPool:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([target.__module__])
        processes: list[BaseProcess] = []
        for spec in specs:
            process = context.Process(
                target=target, args=(spec,), name=f"dse-worker-{spec.index}", daemon=True
            )
            process.start()
            processes.append(process)
        return cls(processes)

    def alive(self) -> int:
        return sum(p.is_alive() for p in self._processes)

    def wait(self, timeout_s: float) -> None:
        """Until a worker exits or ``timeout_s`` passes."""
        running = [p.sentinel for p in self._processes if p.is_alive()]
        if running:
            wait(running, timeout_s)

    def lost(self) -> list[str]:
        """Workers that ended otherwise than done or interrupted, as one line each."""
        return [
            f"worker {i} ({_exit_text(p.exitcode)})"
            for i, p in enumerate(self._processes)
            if p.exitcode not in (None, 0, INTERRUPTED_EXIT)
        ]

    def interrupt(self, timeout_s: float = 60.0) -> None:
        """Ctrl-C for every worker (each fails its running trial and exits), then wait.

        A Ctrl-C in the terminal reaches the workers too (one process group): they get a
        moment to stop on their own before those still running get the signal from here.
        """
        self._join(2.0)
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        self._join(timeout_s)
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join(5)

    def _join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
