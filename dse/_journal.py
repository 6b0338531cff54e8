"""Damaged Optuna journal files: find the damage before anything is appended, cut a torn tail.

Optuna's `JournalFileBackend` writes one JSON object per line, each line ended by ``"\\n"``,
while it holds its lock file (``<journal>.lock``). A crash in the middle of a write leaves a
last line without its newline; Optuna skips that line when it reads, but its next append
lands right after it, and from then on the file cannot be read at all. So before a journal is
opened:

* a damaged *tail* (a last line without newline, or lines that are not journal records after
  the last record) is cut off: the damaged file is copied to a backup next to it, and the
  journal is rewritten atomically with every complete record;
* a damaged *middle* (a line that is not a record, followed by records) is refused with
  `CorruptFileError`: only a person can choose between a backup and the records before it.

A record is what Optuna itself reads: a ``"\\n"``-terminated line holding a JSON object with
an ``op_code`` and a ``worker_id``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock

from robustdice_core import CorruptFileError

__all__ = [
    "JournalRepair",
    "JournalScan",
    "RepairedJournalStorage",
    "is_record",
    "repair_journal",
    "scan_journal",
    "storage_notes",
]

BACKUP_INFIX = ".damaged-"
LOCK_GRACE_S = 30  # Optuna's own default: a lock unchanged for this long is stale
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class JournalScan:
    """What a journal file holds, line by line.

    Attributes:
        size: Bytes in the file.
        records: Complete records up to ``end`` (or up to the damage, when ``damaged_line``).
        end: Byte offset just after the last complete record.
        partial: The last line has no newline (a write cut short).
        invalid_lines: Newline-terminated lines after the last record that are not records.
        first_invalid_line: 1-based number of the first line that is not a record, if any.
        damaged_line: 1-based number of a line that is not a record although records follow
            it (the scan stops there), else None.
    """

    size: int
    records: int
    end: int
    partial: bool = False
    invalid_lines: int = 0
    first_invalid_line: int | None = None
    damaged_line: int | None = None

    @property
    def damaged_tail(self) -> bool:
        return self.damaged_line is None and self.end < self.size

    @property
    def is_clean(self) -> bool:
        return self.damaged_line is None and self.end == self.size


@dataclass(frozen=True)
class JournalRepair:
    """A journal whose damaged tail was cut off, and where the damaged file was kept."""

    path: Path
    backup: Path
    records: int
    dropped_bytes: int
    partial: bool
    invalid_lines: int

    @property
    def message(self) -> str:
        """One line for the user: what was wrong, what was kept, where the backup is."""
        parts = [_count(1, "partial record")] if self.partial else []
        if self.invalid_lines:
            parts.append(_count(self.invalid_lines, "invalid line"))
        return (
            f"journal `{self.path}` had a damaged tail ({_count(self.dropped_bytes, 'byte')}, "
            f"{', '.join(parts)}); kept {_count(self.records, 'complete record')}, "
            f"backup at `{self.backup}`."
        )

    def __str__(self) -> str:
        return self.message


class RepairedJournalStorage(JournalStorage):
    """A `JournalStorage` on a file that `repair_journal` has just repaired; `repair` says how.

    `open_storage` returns one instead of a plain `JournalStorage` so that the note travels
    with the storage: read it with `storage_notes`.
    """

    def __init__(self, backend: BaseJournalBackend, repair: JournalRepair) -> None:
        super().__init__(backend)
        self.repair = repair


def storage_notes(storage: BaseStorage) -> list[str]:
    """One-line notes about how ``storage`` was opened (a repaired journal); usually none."""
    return [storage.repair.message] if isinstance(storage, RepairedJournalStorage) else []


def is_record(line: bytes) -> bool:
    """A complete journal record, as Optuna reads it: a JSON object with its two keys."""
    if not line.endswith(b"\n"):
        return False
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return False
    return (
        isinstance(value, dict)
        and isinstance(value.get("op_code"), int)
        and not isinstance(value.get("op_code"), bool)
        and isinstance(value.get("worker_id"), str)
    )


def scan_journal(path: str | Path) -> JournalScan:
    """Read ``path`` line by line; stop at the first damaged line that records follow."""
    with open(path, "rb") as handle:
        return _scan(handle, os.fstat(handle.fileno()).st_size)


def _scan(handle: BinaryIO, size: int) -> JournalScan:
    records = end = offset = invalid = 0
    partial = False
    first_invalid: int | None = None
    for number, line in _numbered_lines(handle, size):
        offset += len(line)
        if is_record(line):
            if invalid:  # records after a damaged line: the damage is in the middle
                return JournalScan(size, records, end, damaged_line=first_invalid)
            records, end = records + 1, offset
            continue
        first_invalid = first_invalid or number
        if line.endswith(b"\n"):
            invalid += 1
        else:
            partial = True
    return JournalScan(size, records, end, partial, invalid, first_invalid)


def _numbered_lines(handle: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
    """The lines within the first ``size`` bytes (a writer may be appending past them)."""
    left = size
    for number, line in enumerate(handle, start=1):
        if left <= 0:
            return
        line = line[:left]
        left -= len(line)
        yield number, line


def repair_journal(
    path: str | Path,
    *,
    now: Callable[[], datetime] = datetime.now,
    lock_grace_s: int | None = LOCK_GRACE_S,
) -> JournalRepair | None:
    """Cut a damaged tail off the journal ``path``; None when it is clean (or missing).

    The common case (a clean file) reads the file once without locking it. When it looks
    damaged, the file is read again while holding Optuna's own journal lock, so a record that
    a live process is writing is never mistaken for a torn one; the repair is decided and
    done under that lock. A stale lock (its writer died) is taken over after ``lock_grace_s``
    seconds, as Optuna does.

    Raises:
        CorruptFileError: The damage is not at the end (records follow a damaged line), the
            file holds no record at all but whole lines that are not records, or the repair
            could not be written. The file is then left unchanged.
    """
    path = Path(path)
    if not path.is_file() or scan_journal(path).is_clean:
        return None
    lock = JournalFileSymlinkLock(str(path), grace_period=lock_grace_s)
    try:
        lock.acquire()
    except OSError as err:
        raise CorruptFileError(
            f"journal `{path}` looks damaged but its lock `{path}.lock` cannot be taken "
            f"({err}); make its folder writable, or restore the file from a backup."
        ) from err
    try:
        scan = scan_journal(path)
        if scan.is_clean:  # it was a record in flight, now complete
            return None
        _check_repairable(path, scan)
        return _cut_tail(path, scan, now)
    finally:
        lock.release()


def _check_repairable(path: Path, scan: JournalScan) -> None:
    if scan.damaged_line is not None:
        line = scan.damaged_line
        keep = (
            f", or cut the file at line {line} to keep the {_count(line - 1, 'record')} before "
            f"it (`head -n {line - 1}`)"
            if line > 1
            else " (no record comes before it)"
        )
        raise CorruptFileError(
            f"journal `{path}` is damaged at line {line}: it is not a complete Optuna journal "
            f"record, yet records follow it; restore it from a backup{keep}."
        )
    if scan.records == 0 and scan.invalid_lines:
        raise CorruptFileError(
            f"`{path}` is not an Optuna journal: line {scan.first_invalid_line} is not a "
            "journal record and no line is; pass another `--storage` file."
        )


def _cut_tail(path: Path, scan: JournalScan, now: Callable[[], datetime]) -> JournalRepair:
    try:
        backup = _backup(path, now())
        _rewrite_prefix(path, scan.end)
    except OSError as err:
        raise CorruptFileError(
            f"journal `{path}` has a damaged tail but could not be repaired ({err}); make its "
            "folder writable, or restore the file from a backup."
        ) from err
    return JournalRepair(
        path=path,
        backup=backup,
        records=scan.records,
        dropped_bytes=scan.size - scan.end,
        partial=scan.partial,
        invalid_lines=scan.invalid_lines,
    )


def _backup_path(path: Path, when: datetime, attempt: int = 0) -> Path:
    """``studies.log.damaged-YYYYMMDD-HHMMSS`` (``-2``, ``-3``, ... for later attempts)."""
    suffix = f"-{attempt + 1}" if attempt else ""
    return path.with_name(f"{path.name}{BACKUP_INFIX}{when:%Y%m%d-%H%M%S}{suffix}")


def _backup(path: Path, when: datetime) -> Path:
    """A copy of the whole damaged file under a new name; an existing file is never replaced."""
    for attempt in range(1000):
        target = _backup_path(path, when, attempt)
        try:
            with open(path, "rb") as source, open(target, "xb") as copy:
                shutil.copyfileobj(source, copy, _COPY_CHUNK)
                copy.flush()
                os.fsync(copy.fileno())
        except FileExistsError:
            continue
        shutil.copystat(path, target)
        return target
    raise FileExistsError(f"too many backups of `{path}` named {_backup_path(path, when)}-N")


def _rewrite_prefix(path: Path, length: int) -> None:
    """Replace ``path`` by its first ``length`` bytes, atomically, keeping its permissions."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as target, open(path, "rb") as source:
            _copy_bytes(source, target, length)
            target.flush()
            os.fsync(target.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _copy_bytes(source: BinaryIO, target: BinaryIO, length: int) -> None:
    while length > 0:
        chunk = source.read(min(length, _COPY_CHUNK))
        if not chunk:
            raise OSError(f"`{source.name}` ended before byte {length}")
        target.write(chunk)
        length -= len(chunk)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some systems cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
