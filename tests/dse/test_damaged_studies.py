"""Damaged journal files: a torn tail is cut off (with a backup), a damaged middle refused."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from dse import StudySettings, open_storage, prepare_study, run_study
from dse._journal import RepairedJournalStorage, repair_journal, scan_journal, storage_notes
from robustdice_core import CorruptFileError

SETTINGS = StudySettings(model="digits-vgg-bn", objectives=("mem", "energy"), test_size=50)
CLI_SETTINGS = ["--model", "digits-vgg-bn", "--objectives", "mem,energy", "--test-size", "50"]
STUDY = "s"
TRIALS = 15
CLOCK = datetime(2025, 1, 2, 3, 4, 5)
BACKUP = "s.log.damaged-20250102-030405"
NL = b"\n"

Trials = dict[int, tuple[float, ...]]
_folders = itertools.count()


def clock() -> datetime:
    return CLOCK


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a journal holding a finished study of 15 trials, built once."""
    path = tmp_path_factory.mktemp("journal") / "s.log"
    with prepare_study(SETTINGS, storage_url=str(path), study_name=STUDY) as prepared:
        run_study(prepared, trials=TRIALS)
    return path.read_bytes()


def write(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "s.log"
    path.write_bytes(data)
    return path


def complete_trials(path: Path) -> Trials:
    """Completed trials and their values, as plain Optuna reads them."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return {
        t.number: tuple(t.values)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }


def trials_in(data: bytes, tmp_path: Path) -> Trials:
    """The completed trials of a journal's bytes (read from a copy in a folder of its own)."""
    return complete_trials(write(tmp_path / f"copy{next(_folders)}", data))


def whole_lines(data: bytes, cut: int) -> bytes:
    """The complete lines among the first ``cut`` bytes."""
    return data[: data.rfind(NL, 0, cut) + 1]


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("cut", [100, "half"])
def test_a_torn_tail_is_cut_off_and_every_fully_recorded_trial_kept(
    journal: bytes, tmp_path: Path, cut: int | str
) -> None:
    damaged = journal[: len(journal) // 2] if cut == "half" else journal[:-100]
    assert not damaged.endswith(NL)
    path = write(tmp_path, damaged)
    path.chmod(0o640)
    repair = repair_journal(path, now=clock)
    assert repair is not None
    kept_bytes = whole_lines(damaged, len(damaged))
    assert repair.message == (
        f"journal `{path}` had a damaged tail ({len(damaged) - len(kept_bytes)} bytes, "
        f"1 partial record); kept {kept_bytes.count(NL)} complete records, backup at "
        f"`{tmp_path / BACKUP}`."
    )
    assert path.read_bytes() == kept_bytes
    assert (tmp_path / BACKUP).read_bytes() == damaged
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert files(tmp_path) == {"s.log", BACKUP}  # no temporary file, no lock left behind
    kept = complete_trials(path)
    before = trials_in(journal, tmp_path)
    assert kept == trials_in(kept_bytes, tmp_path)
    assert kept.items() <= before.items()  # same trials, same values
    if cut == 100:
        assert len(kept) == TRIALS - 1  # only the trial whose last record was torn


@pytest.mark.parametrize(
    ("tail", "what"),
    [
        (b"garbage\n", "1 invalid line"),
        (b'{"hello": 1}\n', "1 invalid line"),
        (b'[1, 2]\n\n{"op_code": "4", "worker_id": "w"}\n', "3 invalid lines"),
        (b'{"op_code": 4, "worker_id": "w"', "1 partial record"),
        (b"\xff\xfe\x00\n{", "1 partial record, 1 invalid line"),
    ],
)
def test_garbage_after_the_last_record_is_cut_off(
    journal: bytes, tmp_path: Path, tail: bytes, what: str
) -> None:
    path = write(tmp_path, journal + tail)
    repair = repair_journal(path, now=clock)
    assert repair is not None
    assert f"({len(tail)} byte{'s' if len(tail) > 1 else ''}, {what});" in repair.message
    assert repair.records == journal.count(NL)
    assert path.read_bytes() == journal
    assert complete_trials(path) == trials_in(journal, tmp_path)


def test_a_clean_journal_and_an_empty_file_are_left_alone(journal: bytes, tmp_path: Path) -> None:
    for data in (journal, b""):
        path = write(tmp_path, data)
        assert scan_journal(path).is_clean
        assert repair_journal(path, now=clock) is None
        assert path.read_bytes() == data
    assert repair_journal(tmp_path / "missing.log") is None
    assert files(tmp_path) == {"s.log"}
    study = optuna.create_study(storage=open_storage(str(path)), study_name="new")
    assert study.study_name == "new"


def test_a_damaged_middle_is_refused_naming_the_line_and_nothing_changes(
    journal: bytes, tmp_path: Path
) -> None:
    lines = journal.splitlines(keepends=True)
    damaged = b"".join([*lines[:9], b'{"op_code": 6, "worker_id": "w", "tri\n', *lines[9:]])
    path = write(tmp_path, damaged)
    with pytest.raises(CorruptFileError) as error:
        repair_journal(path, now=clock)
    message = str(error.value)
    assert message.startswith(f"journal `{path}` is damaged at line 10:")
    assert "cut the file at line 10 to keep the 9 records before it" in message
    assert len(message.splitlines()) == 1
    assert path.read_bytes() == damaged
    assert files(tmp_path) == {"s.log"}
    with pytest.raises(CorruptFileError, match="damaged at line 10"):  # not wrapped
        open_storage(str(path))


def test_what_the_old_bug_left_behind_is_refused(journal: bytes, tmp_path: Path) -> None:
    """A torn tail with a later run's records appended to it: its first line is damaged."""
    torn = journal[:-100]
    path = write(tmp_path, torn + journal.splitlines(keepends=True)[-1] * 3)
    with pytest.raises(CorruptFileError, match=f"damaged at line {torn.count(NL) + 1}:"):
        repair_journal(path, now=clock)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"2025-01-01 INFO started\n2025-01-01 INFO done\n")
    with pytest.raises(CorruptFileError, match="is not an Optuna journal: line 1"):
        repair_journal(path)
    assert files(tmp_path) == {"s.log"}


def test_a_second_repair_is_a_no_op(journal: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, journal[:-100])
    assert repair_journal(path, now=clock) is not None
    repaired = path.read_bytes()
    assert repair_journal(path, now=clock) is None
    assert path.read_bytes() == repaired
    assert files(tmp_path) == {"s.log", BACKUP}


def test_a_backup_is_never_overwritten(journal: bytes, tmp_path: Path) -> None:
    (tmp_path / BACKUP).write_bytes(b"an older backup")
    path = write(tmp_path, journal + b"junk\n")
    first = repair_journal(path, now=clock)
    path.write_bytes(journal + b"more junk\n")
    second = repair_journal(path, now=clock)
    assert first is not None and second is not None
    assert (first.backup.name, second.backup.name) == (f"{BACKUP}-2", f"{BACKUP}-3")
    assert (tmp_path / BACKUP).read_bytes() == b"an older backup"
    assert first.backup.read_bytes() == journal + b"junk\n"
    assert second.backup.read_bytes() == journal + b"more junk\n"


def test_a_record_being_written_under_the_lock_is_not_cut(journal: bytes, tmp_path: Path) -> None:
    """A live writer holds Optuna's journal lock: the check waits for it, then finds no damage."""
    path = write(tmp_path, journal)
    record = journal.splitlines(keepends=True)[-1]
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    results: list[object] = []
    checker = threading.Thread(target=lambda: results.append(repair_journal(path, now=clock)))
    try:
        with path.open("ab") as handle:
            handle.write(record[:50])  # half a record, as a writer caught mid-write
            handle.flush()
            checker.start()
            time.sleep(0.5)
            assert checker.is_alive(), "the check must wait for the writer's lock"
            assert path.read_bytes() == journal + record[:50]
            handle.write(record[50:])
    finally:
        lock.release()
    checker.join(timeout=10)
    assert results == [None]
    assert path.read_bytes() == journal + record
    assert files(tmp_path) == {"s.log"}


def test_open_storage_carries_the_note_and_resumes(journal: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, journal[:-100])
    storage = open_storage(str(path))
    assert isinstance(storage, RepairedJournalStorage)
    (note,) = storage_notes(storage)
    assert note.startswith(f"journal `{path}` had a damaged tail (")
    assert "1 partial record); kept" in note and len(note.splitlines()) == 1
    assert storage_notes(open_storage(str(path))) == []  # repaired once, then a plain journal
    assert storage_notes(open_storage(":memory:")) == []
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study.enqueue_trial(study.trials[0].params)  # appends after the repair
    assert len(complete_trials(path)) == TRIALS - 1
    assert path.read_bytes().endswith(NL) and scan_journal(path).is_clean


def test_dse_optimize_resumes_a_torn_journal(journal: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, journal[:-100])
    before = trials_in(journal[:-100], tmp_path)
    command = [sys.executable, "-m", "dse.cli", "optimize", *CLI_SETTINGS, "--trials", "17"]
    command += ["--storage", str(path), "--out", str(tmp_path / "out"), "--study", STUDY]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    assert run.returncode == 0, run.stderr
    after = complete_trials(path)
    assert len(after) == 17
    assert {n: after[n] for n in before} == before  # no completed trial lost or changed
    assert any(name.startswith("s.log.damaged-") for name in files(tmp_path))
    notes = [line for line in run.stdout.splitlines() if "had a damaged tail" in line]
    assert len(notes) == 1 and f"journal `{path}`" in notes[0] and "1 partial record" in notes[0]
