"""Reading typed fields out of parsed JSON, with errors that name the field.

Every reader of a bundle file goes through these, so a damaged or hand-edited file is
answered with ``field `x.y` must be an integer, got 'abc'`` instead of a ``KeyError``.
The caller (`read_manifest`, `read_json`) prefixes the file's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from robustdice_core._errors import CorruptFileError

__all__ = [
    "get_float",
    "get_int",
    "get_list",
    "get_mapping",
    "get_optional_int",
    "get_optional_str",
    "get_str",
    "where",
]


def where(prefix: str, key: str | int) -> str:
    """The dotted path of a field: ``where("expected", "fps") == "expected.fps"``."""
    item = f"[{key}]" if isinstance(key, int) else key
    if not prefix:
        return str(item)
    return f"{prefix}{item}" if isinstance(key, int) else f"{prefix}.{item}"


def _present(data: Mapping[str, Any], key: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise CorruptFileError(f"field `{prefix or '(root)'}` must be an object.")
    if key not in data:
        raise CorruptFileError(f"field `{where(prefix, key)}` is missing.")
    return data[key]


def _wrong(path: str, kind: str, value: Any) -> CorruptFileError:
    shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
    return CorruptFileError(f"field `{path}` must be {kind}, got {shown}.")


def get_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = _present(data, key, prefix)
    if not isinstance(value, str):
        raise _wrong(where(prefix, key), "a string", value)
    return value


def get_optional_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    if data.get(key) is None:
        return None
    return get_str(data, key, prefix)


def get_int(data: Mapping[str, Any], key: str, prefix: str = "") -> int:
    value = _present(data, key, prefix)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(where(prefix, key), "an integer", value)
    return value


def get_optional_int(data: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
    if data.get(key) is None:
        return None
    return get_int(data, key, prefix)


def get_float(data: Mapping[str, Any], key: str, prefix: str = "") -> float:
    value = _present(data, key, prefix)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _wrong(where(prefix, key), "a number", value)
    return float(value)


def get_list(data: Mapping[str, Any], key: str, prefix: str = "") -> list[Any]:
    value = _present(data, key, prefix)
    if not isinstance(value, list):
        raise _wrong(where(prefix, key), "a list", value)
    return value


def get_mapping(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = _present(data, key, prefix)
    if not isinstance(value, Mapping):
        raise _wrong(where(prefix, key), "an object", value)
    return value
