"""The project's exception hierarchy; only the CLI turns these into exit codes."""

from __future__ import annotations


class RobustDiceError(Exception):
    """Base class for every error a user can cause and fix."""


class UnknownNameError(RobustDiceError, KeyError):
    """A name (model, scorer, partitioner, ...) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class InvalidParameterError(RobustDiceError, ValueError):
    """A parameter is outside its valid range or malformed."""


class MissingResourceError(RobustDiceError, FileNotFoundError):
    """Weights, data or a cache entry that the request needs is not available."""


class UnsupportedModelError(RobustDiceError):
    """A model contains a layer structure that unit discovery cannot handle."""


class CorruptFileError(RobustDiceError):
    """A file on disk (bundle, cache, weights) is unreadable or fails its checks."""
