"""Trial heartbeats: how the processes that share a study tell a dead trial from a live one.

Optuna's heartbeat mechanism does the work: while a trial runs, a thread records a heartbeat
every `HEARTBEAT_INTERVAL_S`; before each trial, `optuna.storages.fail_stale_trials` fails the
RUNNING trials whose last heartbeat is older than `GRACE_PERIOD_S` and hands them to the
storage's stale-trial callback, here `RetryStaleTrial` (Optuna's retry, which queues the
trial's parameters again).

`RDBStorage` implements heartbeats itself (a table, the database's clock). Optuna 5.0's
`JournalStorage` does not (optuna/optuna#6615); `HeartbeatJournalStorage` adds Optuna's
`BaseHeartbeat` interface to it, keeping each trial's last heartbeat as a trial system
attribute in the journal, so the same Optuna code runs on both.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState

from dse._journal import JournalRepair, RepairedJournalStorage
from dse._record import RETRY_OF_ATTR

__all__ = [
    "GRACE_PERIOD_S",
    "HEARTBEAT_ATTR",
    "HEARTBEAT_INTERVAL_S",
    "MAX_RETRY",
    "HeartbeatJournalStorage",
    "RetryStaleTrial",
    "fail_stale_trials",
    "heartbeat_journal",
    "rdb_heartbeat_options",
]

# Every process of a study must use the same values (a shorter grace period would fail the
# trials of a process that beats less often), so they are constants, not options.
HEARTBEAT_INTERVAL_S = 2
GRACE_PERIOD_S = 10  # five missed heartbeats
MAX_RETRY = 3  # a trial that kills its process every time is given up after 3 retries
HEARTBEAT_ATTR = "robustdice:heartbeat"  # journal only: the last heartbeat, epoch seconds


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial; the copy also names the original in `retry_of`.

    The copy leaves out the dead trial's heartbeat, so it is not taken for stale itself
    before its own first heartbeat.
    """

    def __init__(self, max_retry: int | None = MAX_RETRY) -> None:
        with warnings.catch_warnings():  # Optuna marks it experimental; we use it knowingly
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retry = copy.deepcopy(trial)
        original = trial.system_attrs.get("failed_trial", trial.number)
        retry.set_user_attr(RETRY_OF_ATTR, original)
        retry.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
        super().__call__(study, retry)


def rdb_heartbeat_options() -> dict[str, Any]:
    """Keyword arguments that turn on `RDBStorage`'s heartbeats."""
    return {
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
        "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=MAX_RETRY),
    }


class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """A `JournalStorage` with Optuna's heartbeat interface (journal files are shared by the
    processes of one machine, or of machines that share its folder with working locks).

    Heartbeats are wall-clock times of the process that writes them: processes on several
    machines need synchronised clocks (NTP), as for any journal on a shared folder.
    """

    def __init__(
        self,
        backend: BaseJournalBackend,
        *,
        clock: Callable[[], float] = time.time,
        interval_s: int = HEARTBEAT_INTERVAL_S,
        grace_period_s: int = GRACE_PERIOD_S,
    ) -> None:
        optuna.storages.JournalStorage.__init__(self, backend)
        self._clock = clock
        self._interval_s = interval_s
        self._grace_period_s = grace_period_s
        self._on_stale = RetryStaleTrial(max_retry=MAX_RETRY)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, self._clock())
        except UpdateFinishedTrialError:
            pass  # another process failed it as stale: its retry runs elsewhere

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = self._clock()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if now - _last_sign_of_life(t) > self._grace_period_s]

    def get_heartbeat_interval(self) -> int | None:
        return self._interval_s

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._on_stale


class _RepairedHeartbeatJournalStorage(HeartbeatJournalStorage, RepairedJournalStorage):
    """A heartbeat journal whose file was just repaired (`dse._journal.storage_notes`)."""

    def __init__(self, backend: BaseJournalBackend, repair: JournalRepair) -> None:
        HeartbeatJournalStorage.__init__(self, backend)
        self.repair = repair


def heartbeat_journal(
    backend: BaseJournalBackend, repair: JournalRepair | None
) -> HeartbeatJournalStorage:
    """A heartbeat journal storage on ``backend``, carrying the note of its repair if any."""
    if repair is None:
        return HeartbeatJournalStorage(backend)
    return _RepairedHeartbeatJournalStorage(backend, repair)


def _last_sign_of_life(trial: FrozenTrial) -> float:
    """Its last heartbeat (or its start, if later: a re-run trial starts anew); a trial with
    no heartbeat yet is never stale, as in `RDBStorage` (its sampler may still be running:
    see `dse._workers.fail_orphans`)."""
    if HEARTBEAT_ATTR not in trial.system_attrs:
        return float("inf")
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(float(trial.system_attrs[HEARTBEAT_ATTR]), started)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's `fail_stale_trials` (a no-op without heartbeats), without its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
