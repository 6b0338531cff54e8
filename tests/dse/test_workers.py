"""Many processes, one study: the budget, heartbeats, locks, and `dse optimize --workers`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from dse import (
    RETRY_OF_ATTR,
    RobustnessProblem,
    StudySettings,
    open_storage,
    prepare_study,
    run_study,
)
from dse._heartbeat import (
    GRACE_PERIOD_S,
    HEARTBEAT_ATTR,
    HeartbeatJournalStorage,
    RetryStaleTrial,
    fail_stale_trials,
)
from dse._study import (
    SETTINGS_ATTR,
    SPACE_ATTR,
    StorageKind,
    StudyLock,
    load_existing,
    stored_settings,
)
from dse._workers import (
    ORPHAN_S,
    PARALLEL_SAMPLER,
    WORKER_ATTR,
    TrialBudget,
    check_workers,
    default_sampler,
    fail_orphans,
    run_trials,
)
from robustdice_core import InvalidParameterError

SETTINGS = StudySettings(objectives=("mem", "energy"), test_size=50)  # no accuracy: fast
DSE = [sys.executable, "-m", "dse.cli"]
FAST = ["--test-size", "50", "--objectives", "mem,energy"]


@pytest.fixture(scope="module")
def problem() -> RobustnessProblem:
    return RobustnessProblem(SETTINGS)


def _study(storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    return optuna.create_study(storage=storage, directions=["minimize"])


def _objective(trial: Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def _states(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


# ----------------------------------------------------------------------------- the budget
def test_places_go_to_trials_in_number_order() -> None:
    study = _study()
    budget = TrialBudget(3)
    first, second = study.ask(), study.ask()  # RUNNING, elsewhere
    study.tell(first, 0.5)
    study.enqueue_trial({"x": 0.1})  # trial 2, WAITING
    assert budget.admits(study, 2) and budget.has_place(study)
    assert not budget.admits(study, 3), "COMPLETE 0, RUNNING 1, WAITING 2 take the 3 places"
    study.tell(second, state=TrialState.FAIL)  # a failed trial frees its place
    assert budget.admits(study, 3)
    assert not budget.reached(study) and budget.complete(study) == 1


def test_the_oldest_waiting_trial_decides_whether_to_ask() -> None:
    study = _study()
    budget = TrialBudget(1)
    study.enqueue_trial({"x": 0.0})
    study.enqueue_trial({"x": 1.0})
    assert budget.has_place(study)
    study.tell(study.ask(), 0.0)  # takes trial 0
    assert not budget.has_place(study), "trial 1 waits behind the one complete trial"


class _RacingBudget(TrialBudget):
    """What a process sees when another one asks at the same moment: a place, yet none."""

    def has_place(self, study: optuna.Study) -> bool:
        return True


def test_a_trial_without_a_place_is_pruned_and_its_params_queued_again() -> None:
    study = _study()
    study.ask()  # trial 0: another process runs it
    study.enqueue_trial({"x": 0.75}, user_attrs={RETRY_OF_ATTR: 7})  # trial 1
    run_trials(study, _objective, _RacingBudget(1), attempts=1)
    assert study.trials[1].state == TrialState.PRUNED
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == {"x": 0.75}
    assert waiting.user_attrs[RETRY_OF_ATTR] == 7
    assert TrialBudget(1).complete(study) == 0


def test_run_trials_stops_at_exactly_the_budget_and_records_the_worker() -> None:
    study = _study()
    run_trials(study, _objective, TrialBudget(5), attempts=5)
    assert _states(study) == {"COMPLETE": 5}
    assert {t.user_attrs[WORKER_ATTR] for t in study.trials} == {
        f"{os.uname().nodename}/{os.getpid()}"
    }


def test_trials_that_keep_failing_end_the_run_after_its_attempts() -> None:
    study = _study()

    def broken(trial: Trial) -> float:
        raise InvalidParameterError("always")

    run_trials(study, broken, TrialBudget(5), attempts=3, catch=(InvalidParameterError,))
    assert _states(study) == {"FAIL": 3}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # `ask` by hand
def test_a_process_waits_for_a_trial_running_elsewhere_and_retries_it_once_dead(
    tmp_path: Path,
) -> None:
    now = [time.time()]
    storage = HeartbeatJournalStorage(
        JournalFileBackend(str(tmp_path / "s.log")), clock=lambda: now[0]
    )
    study = _study(storage)
    dead = study.ask()  # another process's trial; that process dies after one heartbeat
    dead.suggest_float("x", 0, 1)
    storage.record_heartbeat(dead._trial_id)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # waiting moves the clock past the grace period
        waits.append(seconds)
        now[0] += GRACE_PERIOD_S + 1

    run_trials(study, _objective, TrialBudget(2), attempts=2, sleep=sleep)
    assert waits, "one place was free; the other waited for the dead trial to go stale"
    assert _states(study) == {"COMPLETE": 2, "FAIL": 1}
    (retry,) = [t for t in study.trials if t.user_attrs.get(RETRY_OF_ATTR) == dead.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == study.trials[dead.number].params


# ----------------------------------------------------------------------------- heartbeats
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_journal_trial_is_stale_only_after_the_grace_period(tmp_path: Path) -> None:
    now = [time.time()]
    storage = HeartbeatJournalStorage(
        JournalFileBackend(str(tmp_path / "s.log")), clock=lambda: now[0]
    )
    study = _study(storage)
    live, dead, sampling = study.ask(), study.ask(), study.ask()
    dead.suggest_float("x", 0, 1)
    for trial in (live, dead):
        storage.record_heartbeat(trial._trial_id)
    now[0] += GRACE_PERIOD_S - 1
    storage.record_heartbeat(live._trial_id)
    fail_stale_trials(study)
    assert _states(study) == {"RUNNING": 3}, "within the grace period nobody is failed"
    now[0] += 2
    fail_stale_trials(study)
    assert study.trials[live.number].state == TrialState.RUNNING, "its heartbeat is fresh"
    assert study.trials[sampling.number].state == TrialState.RUNNING, "no heartbeat yet"
    assert study.trials[dead.number].state == TrialState.FAIL
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == study.trials[dead.number].params
    assert retry.user_attrs[RETRY_OF_ATTR] == dead.number
    assert HEARTBEAT_ATTR not in retry.system_attrs, "the copy is not born stale"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_trial_whose_objective_never_started_is_failed_after_orphan_s(tmp_path: Path) -> None:
    storage = HeartbeatJournalStorage(JournalFileBackend(str(tmp_path / "s.log")))
    study = _study(storage)
    orphan = study.ask()  # its process died while the sampler ran: no heartbeat, no worker
    running = study.ask()
    running.set_user_attr(WORKER_ATTR, "host/1")  # reached its objective: heartbeats decide
    later = time.time() + ORPHAN_S + 1
    assert fail_orphans(study, clock=time.time) == 0
    assert fail_orphans(study, clock=lambda: later) == 1
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == TrialState.FAIL
    assert states[running.number] == TrialState.RUNNING
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.user_attrs[RETRY_OF_ATTR] == orphan.number
    assert fail_orphans(study, clock=lambda: later) == 0


def test_a_trial_is_retried_at_most_max_retry_times() -> None:
    study = _study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    retry = RetryStaleTrial(max_retry=1)
    study.tell(trial, state=TrialState.FAIL)
    retry(study, study.trials[0])
    again = study.ask()  # the retry, which dies too
    study.tell(again, state=TrialState.FAIL)
    retry(study, study.trials[again.number])
    assert _states(study) == {"FAIL": 2}, "the second death is not retried"
    assert study.trials[again.number].user_attrs[RETRY_OF_ATTR] == 0


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_postgresql_heartbeats_fail_a_dead_trial_and_retry_it(postgres_url: str) -> None:
    storage = RDBStorage(
        postgres_url,
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=RetryStaleTrial(),
    )
    study = _study(storage)
    dead = study.ask()
    dead.suggest_float("x", 0, 1)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # the database's clock decides
    live = study.ask()
    storage.record_heartbeat(live._trial_id)
    fail_stale_trials(study)
    states = {t.number: t.state for t in study.trials}
    assert states[dead.number] == TrialState.FAIL and states[live.number] == TrialState.RUNNING
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == dead.params and retry.user_attrs[RETRY_OF_ATTR] == dead.number


def test_open_storage_turns_heartbeats_on_only_where_processes_share(
    tmp_path: Path, postgres_url: str
) -> None:
    journal = open_storage(str(tmp_path / "s.log"), heartbeat=True)
    assert isinstance(journal, HeartbeatJournalStorage)
    assert not isinstance(open_storage(str(tmp_path / "t.log")), HeartbeatJournalStorage)
    server = open_storage(postgres_url, heartbeat=True)
    assert isinstance(server, RDBStorage) and server.heartbeat_interval is not None
    sqlite = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=True)
    assert isinstance(sqlite, RDBStorage) and sqlite.heartbeat_interval is None


def test_a_trial_failed_as_stale_while_it_ran_does_not_stop_the_process() -> None:
    study = _study()

    def slow_heartbeat(trial: Trial) -> float:  # meanwhile another process fails it as stale
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return x

    run_trials(study, slow_heartbeat, TrialBudget(2), attempts=3)
    assert _states(study) == {"FAIL": 1, "COMPLETE": 2}


def test_a_real_error_still_stops_the_process() -> None:
    def bug(trial: Trial) -> float:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_trials(_study(), bug, TrialBudget(2), attempts=2)


# ----------------------------------------------------------------------------- storages, locks
@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (":memory:", StorageKind.MEMORY),
        ("sqlite:///:memory:", StorageKind.MEMORY),
        ("sqlite:///runs/s.db", StorageKind.SQLITE),
        ("runs/studies.log", StorageKind.JOURNAL),
        ("postgresql://u@host:5432/db", StorageKind.SERVER),
        ("mysql+pymysql://u@host/db", StorageKind.SERVER),
    ],
)
def test_storage_kinds(url: str, kind: StorageKind) -> None:
    assert StorageKind.of(url) is kind
    assert kind.shared == (kind in (StorageKind.JOURNAL, StorageKind.SERVER))


@pytest.mark.parametrize(
    ("workers", "url", "message"),
    [
        (0, "s.log", "`--workers` must be in 1..64"),
        (65, "s.log", "`--workers` must be in 1..64"),
        (2, ":memory:", "is in memory"),
        (2, "sqlite:///s.db", "SQLite, one process per study"),
    ],
)
def test_workers_need_a_storage_that_processes_share(workers: int, url: str, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        check_workers(workers, url)


@pytest.mark.parametrize("url", [":memory:", "sqlite:///s.db", "s.log", "postgresql://u@h/db"])
def test_one_worker_suits_every_storage_and_several_a_shared_one(url: str) -> None:
    check_workers(1, url)
    if StorageKind.of(url).shared:
        check_workers(8, url)


@pytest.mark.parametrize(
    ("storage", "message"),
    [(":memory:", "is in memory"), ("sqlite:///x.db", "SQLite, one process per study")],
)
def test_the_cli_refuses_workers_on_a_storage_they_cannot_share(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    storage: str,
    message: str,
) -> None:
    from dse.cli import main

    monkeypatch.setattr(sys, "argv", ["dse", "optimize", "--workers", "2", "--storage", storage])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_study_lock_is_shared_by_runners_and_exclusive_only_alone(tmp_path: Path) -> None:
    url = str(tmp_path / "s.log")
    first = StudyLock.for_study(url, "s")
    second = StudyLock.for_study(url, "s")
    assert first is not None and second is not None
    first.shared()
    assert not second.exclusive(), "a process runs the study"
    second.shared()  # and another joins it
    first.release()
    second.release()
    alone = StudyLock.for_study(url, "s")
    assert alone is not None and alone.exclusive()
    alone.release()
    assert StudyLock.for_study(":memory:", "s") is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # `ask` by hand
def test_a_second_run_joins_a_journal_study_and_recovers_nothing_while_others_run(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    url = str(tmp_path / "s.log")
    with prepare_study(SETTINGS, storage_url=url, study_name="j", problem=problem) as first:
        running = first.study.ask()  # a trial of the first run, running
        with prepare_study(SETTINGS, storage_url=url, study_name="j", problem=problem) as joined:
            assert joined.recovered == 0, "the first run is alive: its trial is not touched"
            assert joined.study.trials[running.number].state == TrialState.RUNNING
    # Both runs gone (as after kill -9): the next one holds the lock alone and recovers.
    with prepare_study(SETTINGS, storage_url=url, study_name="j", problem=problem) as alone:
        assert alone.recovered == 1
        trials = alone.study.trials
        assert trials[running.number].state == TrialState.FAIL
        assert [t.user_attrs.get(RETRY_OF_ATTR) for t in trials[-1:]] == [running.number]


def test_a_study_another_machine_is_creating_is_awaited_not_deleted() -> None:
    storage = optuna.storages.InMemoryStorage()
    partial = optuna.create_study(storage=storage, study_name="h", directions=["minimize"] * 2)
    partial.set_user_attr(SETTINGS_ATTR, SETTINGS.to_dict())
    now = [0.0]

    def sleep(seconds: float) -> None:  # the creator completes the study meanwhile
        now[0] += seconds
        for key in ("robustdice:reference_box", "robustdice:space", "robustdice:fingerprints"):
            partial.set_user_attr(key, {})

    study = load_existing(storage, "h", SETTINGS, settle_s=10, sleep=sleep, clock=lambda: now[0])
    assert study is not None and now[0] == 0.5
    assert load_existing(storage, "h", SETTINGS) is not None


def test_the_sampler_of_a_new_study_depends_on_the_workers_and_an_old_one_keeps_its_own(
    problem: RobustnessProblem, tmp_path: Path
) -> None:
    assert default_sampler(1) == "gp" and default_sampler(4) == PARALLEL_SAMPLER == "tpe"
    url = str(tmp_path / "s.log")
    settings = SETTINGS.replace(sampler="random")
    with prepare_study(
        settings, storage_url=url, study_name="r", problem=problem.for_settings(settings)
    ):
        pass
    stored = stored_settings(url, "r")
    assert stored is not None and stored.sampler == "random"
    assert stored_settings(url, "nope") is None and stored_settings(":memory:", "r") is None


# ----------------------------------------------------------------------------- processes
@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_runners_share_a_study_and_stop_at_exactly_its_trials(
    problem: RobustnessProblem, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """Two `dse optimize` of the same study at once (threads here: each its own storage
    connection and lock, as two processes or machines would have)."""
    url = str(tmp_path / "s.log") if kind == "journal" else request.getfixturevalue("postgres_url")
    trials = 24
    prepared = [
        prepare_study(SETTINGS, storage_url=url, study_name="t", problem=problem)
        for _ in range(2)
    ]

    def run(index: int) -> None:
        run_study(prepared[index], trials=trials)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    for p in prepared:
        p.close()
    study = optuna.load_study(study_name="t", storage=open_storage(url))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == trials
    # Each queued point (the ends of the space) was claimed by one runner only. Points a
    # sampler proposed may repeat: two asks at the same instant see the same trials (GP on
    # mem,energy once proposed one corner of the space twice).
    queued = [tuple(t.params.values()) for t in complete if "fixed_params" in t.system_attrs]
    assert queued and len(set(queued)) == len(queued), "a queued trial ran twice"
    assert not study.get_trials(states=(TrialState.RUNNING,))


def _dse(*args: str) -> list[str]:
    return [*DSE, "optimize", *FAST, *args]


def _trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE]


@pytest.mark.slow
def test_two_workers_on_a_journal_file_run_the_study_once(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.log")
    args = _dse("--trials", "30", "--workers", "2", "--storage", storage, "--study", "w")
    done = subprocess.run(
        [*args, "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "2 worker processes on study `w`" in done.stdout
    assert "w: trials 30/30" in done.stdout and "workers" in done.stdout
    trials = _trials(open_storage(storage), "w")
    complete = _complete(trials)
    assert len(complete) == 30, "exactly the trials asked for"
    surplus = [t for t in trials if t.state != TrialState.COMPLETE]  # asked in a race: not run
    assert all(t.state == TrialState.PRUNED and t.values is None for t in surplus)
    assert len({tuple(t.params.values()) for t in complete}) == 30, "no point ran twice"
    workers = Counter(t.user_attrs[WORKER_ATTR] for t in complete)
    # Which worker takes how many trials is a race (on a loaded CI machine one worker can
    # finish these fast trials before the other has loaded the problem), so only count them.
    assert 1 <= len(workers) <= 2 and str(os.getpid()) not in str(workers)
    stored = stored_settings(storage, "w")
    assert stored is not None and stored.sampler == PARALLEL_SAMPLER  # the default with workers
    assert len((tmp_path / "w" / "trials.csv").read_text().splitlines()) == 1 + len(trials)


def _stop_a_worker_mid_trial(
    storage: optuna.storages.BaseStorage, name: str, process: subprocess.Popen[str]
) -> FrozenTrial:
    """SIGSTOP the worker of a RUNNING trial that has all its parameters; if the trial is
    still RUNNING then (it may have just finished), SIGKILL the worker: that trial dies."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            count = len(study.user_attrs[SPACE_ATTR]["names"])
        except KeyError:
            continue  # not created yet
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if WORKER_ATTR not in trial.user_attrs or len(trial.params) < count:
                continue
            pid = int(trial.user_attrs[WORKER_ATTR].rsplit("/", 1)[1])
            os.kill(pid, signal.SIGSTOP)
            now = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number][0]
            if now.state == TrialState.RUNNING:
                os.kill(pid, signal.SIGKILL)
                return now
            os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no worker could be stopped mid-trial; exit {process.poll()}")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_costs_that_trial_only_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    """3 workers on PostgreSQL, one killed with SIGKILL in the middle of a trial: the other
    two finish the study, the heartbeats fail the dead trial and its parameters run again."""
    trials = 40
    args = _dse("--trials", str(trials), "--workers", "3", "--storage", postgres_url)
    process = subprocess.Popen(
        [*args, "--study", "k", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    storage = open_storage(postgres_url)
    try:
        killed = _stop_a_worker_mid_trial(storage, "k", process)
        out, err = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "killed by SIGKILL" in out and "retried by the others" in out
    every = _trials(storage, "k")
    assert every[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in every if t.user_attrs.get(RETRY_OF_ATTR) == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    complete = _complete(every)
    assert len(complete) == trials, "exactly the trials asked for"
    assert len({tuple(t.params.values()) for t in complete}) == trials, "nothing ran twice"
    # Only a trial asked for when another process took the last place (a race) is PRUNED,
    # before it ran: it has no values.
    assert {t.state for t in every} <= {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED}
    assert all(t.values is None for t in every if t.state == TrialState.PRUNED)
    assert len({t.user_attrs.get(WORKER_ATTR) for t in every} - {None}) == 3
