"""Optuna study storage: create or resume a study, checking that its settings match."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import re
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dse._heartbeat import MAX_RETRY, RetryStaleTrial, heartbeat_journal, rdb_heartbeat_options
from dse._journal import RepairedJournalStorage, repair_journal
from dse._pareto import ReferenceBox
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
    "StorageKind",
    "StudyLock",
    "check_out_dir",
    "check_study_name",
    "claim_out_dir",
    "check_fingerprints",
    "create_study",
    "load_existing",
    "open_storage",
    "recover_stale",
    "stored_settings",
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
_SQLITE_MEMORY = ("sqlite://", "sqlite:///:memory:")


class StorageKind(Enum):
    """Which processes can share a study in a storage, and how a dead one's trial is found.

    ``memory``: this process only. ``sqlite``: one process per study (SQLite lets one
    writer in at a time; concurrent writers wait or fail with "database is locked"), held by
    the study's lock. ``journal``: every process of the machines that share the journal's
    folder (Optuna's journal lock lives there). ``server`` (PostgreSQL, MySQL, ...): every
    process on every machine that reaches the server.
    """

    MEMORY = "memory"
    SQLITE = "sqlite"
    JOURNAL = "journal"
    SERVER = "server"

    @classmethod
    def of(cls, url: str) -> StorageKind:
        if url == ":memory:" or url in _SQLITE_MEMORY:
            return cls.MEMORY
        if _is_journal(url):
            return cls.JOURNAL
        return cls.SQLITE if url.startswith("sqlite:") else cls.SERVER

    @property
    def shared(self) -> bool:
        """Several processes (workers) may run one study at a time."""
        return self in (StorageKind.JOURNAL, StorageKind.SERVER)

    @property
    def lock_sees_all(self) -> bool:
        """Every process that can reach the storage also sees the study's lock file (it lies
        beside the storage's file), so a process that holds it alone knows that every RUNNING
        trial belongs to a dead process."""
        return self in (StorageKind.SQLITE, StorageKind.JOURNAL)


def open_storage(url: str, *, heartbeat: bool = False) -> BaseStorage:
    """An Optuna storage: a journal file path (.log/.jsonl), a database URL, or ``:memory:``.

    ``heartbeat`` turns on trial heartbeats where several processes may share the study
    (journal files and database servers, `StorageKind.shared`; see `dse._heartbeat`).
    """
    if url == ":memory:":  # for benchmarks and tests: nothing is kept
        return InMemoryStorage()
    heartbeat = heartbeat and StorageKind.of(url).shared
    try:
        if _is_journal(url):
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            repair = repair_journal(url)  # before Optuna reads the file or appends to it
            backend = JournalFileBackend(url)
            if heartbeat:
                return heartbeat_journal(backend, repair)
            if repair is not None:  # the note travels with the storage: `storage_notes`
                return RepairedJournalStorage(backend, repair)
            return JournalStorage(backend)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        with warnings.catch_warnings():  # heartbeats are experimental in Optuna 5
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, **(rdb_heartbeat_options() if heartbeat else {}))
    except CorruptFileError:
        raise  # a damaged journal: its own one-line message says what to do
    except Exception as err:  # sqlalchemy/optuna raise many types for bad URLs
        raise InvalidParameterError(
            f"cannot open study storage `{url}` ({type(err).__name__}: {err}); pass "
            "`--storage sqlite:///path/studies.db`, another SQLAlchemy URL, or a .log file."
        ) from err


def load_existing(
    storage: BaseStorage,
    name: str,
    settings: StudySettings,
    *,
    settle_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> optuna.Study | None:
    """The study ``name`` if it exists with the same settings; an error if they differ.

    A study that a killed run left half-created (some of our attributes missing, no trial)
    is deleted so that it is created again. Where another machine may be creating it right
    now (``settle_s`` > 0), it is given that long to be completed first.
    """
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    deadline = clock() + settle_s
    while _half_created(study) and clock() < deadline:
        sleep(0.5)
    ours = (SETTINGS_ATTR, BOX_ATTR, SPACE_ATTR, FINGERPRINTS_ATTR)
    if not all(key in study.user_attrs for key in ours):
        if _half_created(study):
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


def stored_settings(storage_url: str, name: str) -> StudySettings | None:
    """The settings study ``name`` was created with; None if there is no such study of ours.

    Reads only: a missing file is not created, a damaged journal is left for the run to
    repair (and to say so).
    """
    check_study_name(name)
    kind = StorageKind.of(storage_url)
    if kind is StorageKind.MEMORY:
        return None
    if kind.lock_sees_all and not _storage_file(storage_url).is_file():
        return None
    if kind is StorageKind.JOURNAL:
        storage: BaseStorage = JournalStorage(JournalFileBackend(storage_url))
    else:
        storage = open_storage(storage_url)
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    return StudySettings.from_dict(attrs[SETTINGS_ATTR]) if SETTINGS_ATTR in attrs else None


def _half_created(study: optuna.Study) -> bool:
    """Ours (settings stored first), not complete (fingerprints stored last), no trial."""
    attrs = study.user_attrs
    return SETTINGS_ATTR in attrs and FINGERPRINTS_ATTR not in attrs and not study.trials


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
    """One lock file per (storage, study): beside a journal or SQLite file (where every
    process that can open the file sees it), in the temp folder for a database server.

    The lock belongs to the study in its storage, so two runs with different `--out`
    folders still see each other.
    """
    if StorageKind.of(storage_url).lock_sees_all:
        file = _storage_file(storage_url).resolve()
        folder, key = file.parent / ".locks", f"{file.name}|{study}"
    else:
        folder, key = Path(tempfile.gettempdir()) / "robustdice-locks", f"{storage_url}|{study}"
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"


def _storage_file(url: str) -> Path:
    """The file of a journal or SQLite storage."""
    return Path(url.removeprefix("sqlite:///")).expanduser()


def _is_journal(url: str) -> bool:
    return url.endswith(JOURNAL_SUFFIXES) and "://" not in url


class StudyLock:
    """The lock file of a study in its storage, held by every process that runs it.

    Each process holds it *shared* while it runs the study (`shared`). One that gets it
    *exclusively* (`exclusive`) knows that no other process on this machine runs the study,
    and, where `StorageKind.lock_sees_all`, that no process anywhere does: every RUNNING
    trial then belongs to a dead process (`recover_stale`). A study in SQLite keeps the
    exclusive lock for its whole run (one process per study). The OS releases the lock when
    the process dies, kill -9 included. `for_study` gives None for an in-memory storage,
    which no other process can reach.
    """

    @classmethod
    def for_study(cls, storage_url: str, study: str) -> StudyLock | None:
        if StorageKind.of(storage_url) is StorageKind.MEMORY:
            return None
        return cls(_lock_path(storage_url, study), study)

    def __init__(self, path: Path, study: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.study = path, study
        self._handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run

    def exclusive(self) -> bool:
        """Take the lock alone if no other process holds it; False (and no lock) otherwise."""
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def shared(self) -> None:
        """Hold the lock beside the other processes of the study (turns an exclusive lock
        into a shared one; waits while another process checks the study alone)."""
        fcntl.flock(self._handle, fcntl.LOCK_SH)

    def refuse(self) -> InvalidParameterError:
        return InvalidParameterError(
            f"study `{self.study}` is being run by another `dse optimize` (lock `{self.path}`);"
            " wait for it to finish or pass another `--study` name."
        )

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def recover_stale(study: optuna.Study, storage: BaseStorage) -> int:
    """Trials left RUNNING by dead processes: mark them FAIL and queue their params again.

    Only sound where no live process runs the study: the caller holds its `StudyLock`
    exclusively and the storage is one whose lock every process sees. (Elsewhere the
    heartbeats find dead trials: `dse._heartbeat`.) The retry is Optuna's
    (`RetryHeartbeatStaleTrialCallback`, as for a heartbeat-stale trial).
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    retry = RetryStaleTrial(max_retry=MAX_RETRY)
    for trial in stale:
        # Optuna has no public way to fail another process's trial but `fail_stale_trials`,
        # which needs heartbeats; the storage call is public, the trial id attribute is not.
        if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            retry(study, copy.deepcopy(storage.get_trial(trial._trial_id)))
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
