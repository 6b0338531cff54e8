"""Optuna study storage: create or resume a study, checking that its settings match."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dse._pareto import ReferenceBox
from dse._settings import StudySettings
from robustdice_core import InvalidParameterError

__all__ = ["SETTINGS_ATTR", "open_storage", "load_existing", "create_study", "recover_stale"]

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress display reports trials

SETTINGS_ATTR = "robustdice:settings"
BOX_ATTR = "robustdice:reference_box"
SPACE_ATTR = "robustdice:space"
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
    """The study ``name`` if it exists with the same settings; an error if they differ."""
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        raise InvalidParameterError(
            f"study `{name}` exists but was not created by `dse optimize`; choose another "
            "`--study` name."
        )
    differences = settings.differences(StudySettings.from_dict(stored))
    if differences:
        raise InvalidParameterError(
            f"study `{name}` exists with other settings ({', '.join(differences)}); rerun with "
            "its original settings to resume it, or pass a new `--study` name."
        )
    return study


def create_study(
    storage: BaseStorage,
    name: str,
    settings: StudySettings,
    directions: list[str],
    metric_names: list[str],
    box: ReferenceBox,
    space: dict[str, object],
) -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[StudyDirection[d.upper()] for d in directions],
    )
    with warnings.catch_warnings():  # metric names are stable enough for our use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names)
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    study.set_user_attr(BOX_ATTR, box.to_dict())
    study.set_user_attr(SPACE_ATTR, space)
    return study


def recover_stale(study: optuna.Study, storage: BaseStorage) -> int:
    """Trials left RUNNING by a killed process: mark them FAIL and queue their params again.

    A study is run by one `dse optimize` process at a time, so any RUNNING trial found when it
    starts belongs to a process that died.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(stale)
