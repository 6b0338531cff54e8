"""Atomic writes: whole files only, with the permissions any other tool would give them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustdice_core.io import atomic_write_bytes


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask that a test sets."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0, 0o666)])
def test_new_files_get_0666_less_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    os.umask(mask)
    path = tmp_path / "sub" / "trials.csv"
    atomic_write_bytes(path, b"a,b\n")
    assert path.read_bytes() == b"a,b\n"
    assert _mode(path) == expected
    assert [p.name for p in path.parent.iterdir()] == ["trials.csv"], "no temporary file left"


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_replaced_file_keeps_its_mode(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "trials.csv"
    path.write_bytes(b"old")
    path.chmod(0o640)
    os.umask(mask)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "trials.csv"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]
