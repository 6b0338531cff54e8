"""Optuna study storage: create or resume a study, checking that its settings match."""

from __future__ import annotations

import fcntl
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dse._pareto import ReferenceBox
from dse._record import RETRY_OF_ATTR
from dse._settings import StudySettings
from robustdice_core import InvalidParameterError

__all__ = [
    "BOX_ATTR",
    "FINGERPRINTS_ATTR",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "StudyLock",
    "check_fingerprints",
    "create_study",
    "load_existing",
    "open_storage",
    "recover_stale",
]

SETTINGS_ATTR = "robustdice:settings"
BOX_ATTR = "robustdice:reference_box"
SPACE_ATTR = "robustdice:space"
FINGERPRINTS_ATTR = "robustdice:fingerprints"
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage: a journal file path (.log/.jsonl), a database URL, or ``:memory:``."""
    if url == ":memory:":  # for benchmarks and tests: nothing is kept
        return InMemoryStorage()
    try:
        if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(url))
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        return RDBStorage(url)
    except Exception as err:  # sqlalchemy/optuna raise many types for bad URLs
        raise InvalidParameterError(
            f"cannot open study storage `{url}` ({type(err).__name__}: {err}); pass "
            "`--storage sqlite:///path/studies.db`, another SQLAlchemy URL, or a .log file."
        ) from err


def load_existing(storage: BaseStorage, name: str, settings: StudySettings) -> optuna.Study | None:
    """The study ``name`` if it exists with the same settings; an error if they differ.

    A study that a killed run left half-created (some of our attributes missing, no trial)
    is deleted so that it is created again.
    """
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    ours = (SETTINGS_ATTR, BOX_ATTR, SPACE_ATTR, FINGERPRINTS_ATTR)
    if not all(key in study.user_attrs for key in ours):
        if not study.trials and SETTINGS_ATTR in study.user_attrs:
            optuna.delete_study(study_name=name, storage=storage)
            return None
        raise InvalidParameterError(
            f"study `{name}` exists but was not created by `dse optimize`; choose another "
            "`--study` name."
        )
    differences = settings.differences(StudySettings.from_dict(study.user_attrs[SETTINGS_ATTR]))
    if differences:
        raise InvalidParameterError(
            f"study `{name}` exists with other settings ({', '.join(differences)}); rerun with "
            "its original settings to resume it, or pass a new `--study` name."
        )
    return study


def check_fingerprints(study: optuna.Study, fingerprints: dict[str, str]) -> None:
    """Same settings but other weights, data or profile contents: refuse to mix them."""
    stored = study.user_attrs[FINGERPRINTS_ATTR]
    changed = [k for k, v in fingerprints.items() if stored.get(k) != v]
    if changed:
        raise InvalidParameterError(
            f"study `{study.study_name}` was run with other contents of: {', '.join(changed)} "
            "(same names or paths, different files); pass a new `--study` name."
        )


def create_study(
    storage: BaseStorage,
    name: str,
    settings: StudySettings,
    directions: list[StudyDirection],
    metric_names: list[str],
    box: ReferenceBox,
    space: dict[str, object],
    fingerprints: dict[str, str],
) -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=directions,
    )
    with warnings.catch_warnings():  # metric names are stable enough for our use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names)
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())  # first: marks it as ours
    study.set_user_attr(BOX_ATTR, box.to_dict())
    study.set_user_attr(SPACE_ATTR, space)
    study.set_user_attr(FINGERPRINTS_ATTR, fingerprints)  # last: marks the study complete
    return study


class StudyLock:
    """An exclusive lock per study (a file next to its exports), held for a whole run.

    `recover_stale` assumes that one process runs a study; the lock makes that true. Release
    it with `release` or by using the lock as a context manager; the OS releases it when the
    process dies, kill -9 included.
    """

    def __init__(self, path: Path, study: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise InvalidParameterError(
                f"study `{study}` is being run by another `dse optimize` (lock `{path}`); "
                "wait for it to finish or pass another `--study` name."
            ) from None

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def recover_stale(study: optuna.Study, storage: BaseStorage) -> int:
    """Trials left RUNNING by a killed process: mark them FAIL and queue their params again.

    A study is run by one `dse optimize` process at a time, so any RUNNING trial found when it
    starts belongs to a process that died.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        # Optuna has no public way to fail another process's trial (its own fail_stale_trials
        # needs heartbeats); the storage call is public, the trial id attribute is not.
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number})
    return len(stale)
