"""A tiny name -> object registry (torchvision's register_model pattern)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Generic, TypeVar

from robustdice_core._errors import InvalidParameterError, UnknownNameError

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class Registry(Generic[T]):
    """Maps names to objects; lookup of an unknown name lists the valid ones."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            self.add(name, item)
            return item

        return decorator

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self._kind} `{name}` is already registered.")
        self._items[name] = item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise UnknownNameError(
                f"unknown {self._kind} `{name}`; choose one of: {choices}."
            ) from None

    def parse_list(self, value: str | Sequence[str], flag: str) -> tuple[str, ...]:
        """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``: non-empty, registered, no repeats.

        The one parser for options that take several registered names (objectives, scores,
        baselines); every error names ``flag`` and lists the valid names.
        """
        parts = value.split(",") if isinstance(value, str) else list(value)
        names = tuple(str(part).strip() for part in parts if str(part).strip())
        choices = ", ".join(self.names())
        if not names:
            raise InvalidParameterError(
                f"`{flag}` must name at least one {self._kind}; choose one of: {choices}."
            )
        for name in names:
            if name not in self._items:
                raise UnknownNameError(
                    f"`{flag}`: unknown {self._kind} `{name}`; choose one of: {choices}."
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidParameterError(
                f"`{flag}` lists {self._kind} `{repeated[0]}` twice; name each once."
            )
        return names

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def parse_enum(kind: type[E], value: str | E, flag: str) -> E:
    """``kind(value)``, or a one-line error naming ``flag`` and the valid values."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise InvalidParameterError(f"`{flag}` must be one of {choices}, got {value!r}.") from None
