"""File and hashing utilities that the packages built on the core share (atomic writes,
content hashes of JSON-able settings). The score and model caches stay internal."""

from __future__ import annotations

from robustdice_core._cache import atomic_write_bytes, hash_json

__all__ = ["atomic_write_bytes", "hash_json"]
