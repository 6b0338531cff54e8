"""Optuna study storage: create or resume a study, checking that its settings match."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dse._journal import RepairedJournalStorage, repair_journal
from dse._pareto import ReferenceBox
from dse._record import RETRY_OF_ATTR
from dse._settings import StudySettings
from robustdice_core import CorruptFileError, InvalidParameterError
from robustdice_core.io import atomic_write_bytes

__all__ = [
    "BASELINES_ATTR",
    "BOX_ATTR",
    "CREATED_ATTR",
    "FINGERPRINTS_ATTR",
    "SETTINGS_ATTR",
    "SPACE_ATTR",
    "UID_ATTR",
    "StudyLock",
    "check_out_dir",
    "check_study_name",
    "claim_out_dir",
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
UID_ATTR = "robustdice:uid"  # tells apart studies of the same name in different storages
CREATED_ATTR = "robustdice:created"  # ISO time of creation: "the most recent study"
BASELINES_ATTR = "robustdice:baselines"  # the baselines' values and records, by registry name
OUT_MARKER = "study.json"  # in an export folder: which study the files belong to
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_study_name(name: str) -> str:
    """Study names double as folder names: letters, digits, ``.``, ``_``, ``-``."""
    if not _STUDY_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else f"{name[:57]}..."
        raise InvalidParameterError(
            f"`--study` must be 1-100 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit; got {shown!r}."
        )
    return name


JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage: a journal file path (.log/.jsonl), a database URL, or ``:memory:``."""
    if url == ":memory:":  # for benchmarks and tests: nothing is kept
        return InMemoryStorage()
    try:
        if _is_journal(url):
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            repair = repair_journal(url)  # before Optuna reads the file or appends to it
            backend = JournalFileBackend(url)
            if repair is not None:  # the note travels with the storage: `storage_notes`
                return RepairedJournalStorage(backend, repair)
            return JournalStorage(backend)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        return RDBStorage(url)
    except CorruptFileError:
        raise  # a damaged journal: its own one-line message says what to do
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
    study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
    study.set_user_attr(CREATED_ATTR, datetime.now(timezone.utc).isoformat())
    study.set_user_attr(FINGERPRINTS_ATTR, fingerprints)  # last: marks the study complete
    return study


def _lock_path(storage_url: str, study: str) -> Path:
    """One lock file per (storage, study): beside a journal file, else in the temp folder.

    The lock belongs to the study in its storage, so two runs with different `--out`
    folders still exclude each other. (Machine-local: runs on several machines against one
    database need heartbeats instead; see the scale-out issue.)
    """
    if _is_journal(storage_url):
        journal = Path(storage_url).expanduser().resolve()
        folder, key = journal.parent / ".locks", f"{journal.name}|{study}"
    else:
        url = storage_url
        if url.startswith("sqlite:///"):
            url = "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).expanduser().resolve())
        folder, key = Path(tempfile.gettempdir()) / "robustdice-locks", f"{url}|{study}"
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"


def _is_journal(url: str) -> bool:
    return url.endswith(JOURNAL_SUFFIXES) and "://" not in url


class StudyLock:
    """An exclusive lock per study in its storage, held for a whole run.

    `recover_stale` assumes that one process runs a study; the lock makes that true. Release
    it with `release` or by using the lock as a context manager; the OS releases it when the
    process dies, kill -9 included. `for_study` gives None for an in-memory storage, which no
    other process can reach.
    """

    @classmethod
    def for_study(cls, storage_url: str, study: str) -> StudyLock | None:
        if storage_url == ":memory:":
            return None
        return cls(_lock_path(storage_url, study), study)

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


def check_out_dir(out_dir: Path, storage_url: str, name: str, uid: str | None) -> None:
    """Refuse an export folder that holds another study's files (same name, other storage,
    or a study of that name created anew): exports never silently replace another's."""
    marker = out_dir / OUT_MARKER
    if not marker.is_file():
        return
    try:
        claimed = json.loads(marker.read_text(encoding="utf-8"))
        owner = (str(claimed["storage"]), str(claimed["study"]), claimed.get("uid"))
    except (OSError, ValueError, KeyError, TypeError):
        owner = ("?", "?", "?")
    if owner != (storage_url, name, uid):
        raise InvalidParameterError(
            f"`--out` folder `{out_dir}` holds the exports of another study named "
            f"`{owner[1]}` (storage `{owner[0]}`); pass another `--out` or `--study`, or move "
            "that folder away."
        )


def claim_out_dir(out_dir: Path, storage_url: str, name: str, uid: str | None) -> None:
    """Mark ``out_dir`` as the export folder of this study (see `check_out_dir`)."""
    payload = {"study": name, "storage": storage_url, "uid": uid}
    atomic_write_bytes(out_dir / OUT_MARKER, json.dumps(payload, indent=2).encode())
