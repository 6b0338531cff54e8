"""On-disk cache location, content hashing and atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["cache_dir", "hash_tensors", "hash_json", "atomic_write_bytes"]


def cache_dir() -> Path:
    """``$ROBUSTDICE_CACHE`` or ``~/.cache/robustdice``; created on demand."""
    root = Path(os.environ.get("ROBUSTDICE_CACHE", "~/.cache/robustdice")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def hash_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def hash_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file.

    A new file gets the mode any other tool would give it (0o666 less the umask); a file
    replaced keeps its mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            _keep_mode(handle.fileno(), path)
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """An open, new, empty file next to ``path``, created with mode 0o666 so that the kernel
    applies the umask (`tempfile.mkstemp` would create it 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to `{path}`.")


def _keep_mode(fd: int, path: Path) -> None:
    """Give the open temporary file the mode of the file it will replace, if there is one."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.chmod(fd, mode)
