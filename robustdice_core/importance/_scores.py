"""Computing, caching and normalising importance scores (DESIGN 3.2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from robustdice_core._cache import atomic_write_bytes, cache_dir, hash_json
from robustdice_core._errors import InvalidParameterError
from robustdice_core._registry import Registry
from robustdice_core.importance._base import ImportanceScorer
from robustdice_core.importance._divergence import DivergenceScorer
from robustdice_core.importance._magnitude import MagnitudeScorer
from robustdice_core.importance._taylor import TaylorScorer
from robustdice_core.masking import MaskedNetwork
from robustdice_core.zoo import LabelledImages

__all__ = ["SCORERS", "ImportanceScores", "compute_scores", "parse_score_names"]

log = logging.getLogger(__name__)

SCORERS: Registry[type[ImportanceScorer]] = Registry("importance score")
for _scorer in (MagnitudeScorer, TaylorScorer, DivergenceScorer):
    SCORERS.add(_scorer.name, _scorer)


def parse_score_names(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"s1,s3"`` or ``["s1", "s3"]`` -> ``("s1", "s3")``, checked: non-empty, known, unique."""
    return SCORERS.parse_list(text, "scores")


@dataclass(frozen=True)
class ImportanceScores:
    """Raw scores per score name and unit.

    Attributes:
        raw: per score name, one ``[n_i]`` array per unit.
        unit_names: the units' layer names (e.g. ``features.3``), for error messages; empty
            when unknown (errors then give the unit index).
    """

    raw: dict[str, tuple[np.ndarray, ...]]
    unit_names: tuple[str, ...] = ()

    def points(self, names: Sequence[str]) -> list[np.ndarray]:
        """Per unit, ``[n_i, len(names)]`` scores, each column min-max normalised to [0, 1].

        Raises:
            InvalidParameterError: a score was not computed, or one is NaN or infinite.
        """
        missing = [n for n in names if n not in self.raw]
        if missing:
            raise InvalidParameterError(f"scores {missing} were not computed.")
        units = len(next(iter(self.raw.values())))
        return [
            np.stack([self._normalised(name, u) for name in names], axis=1) for u in range(units)
        ]

    def _normalised(self, name: str, unit: int) -> np.ndarray:
        values = np.asarray(self.raw[name][unit], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            label = self.unit_names[unit] if unit < len(self.unit_names) else str(unit)
            raise InvalidParameterError(
                f"importance score `{name}` of unit `{label}` (unit {unit}) must be finite, "
                f"got {values[bad[0]]} at neuron {int(bad[0])} ({bad.size} non-finite); check "
                "the model's weights and calibration images for NaN/inf, or leave this score out."
            )
        return _min_max(values)


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scale finite ``values`` to [0, 1]; a constant score becomes 0."""
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values, dtype=np.float64)
    if not np.isfinite(high - low):  # finite values whose range overflows: halve first
        values, low, high = values / 2, low / 2, high / 2
    return (values - low) / (high - low)


def compute_scores(
    net: MaskedNetwork,
    calibration: LabelledImages | None,
    names: Sequence[str],
    *,
    weights_hash: str,
    scorers: dict[str, ImportanceScorer] | None = None,
    use_cache: bool = True,
) -> ImportanceScores:
    """Compute (or load from the cache) the raw scores ``names`` for every unit.

    The cache key is the weights hash, the calibration set's fingerprint, the scorer and its
    settings; each score is cached on its own, so ablations over subsets reuse them.
    """
    calibration_key = "none" if calibration is None else calibration.fingerprint()
    raw: dict[str, tuple[np.ndarray, ...]] = {}
    for name in parse_score_names(list(names)):
        scorer = (scorers or {}).get(name) or SCORERS.get(name)()
        key = hash_json(
            {
                "weights": weights_hash,
                "calibration": calibration_key,
                "scorer": name,
                "settings": scorer.settings(),
                "units": [u.to_dict() for u in net.units],
                "format": 1,
            }
        )[:24]
        path = cache_dir() / "scores" / f"{name}-{key}.safetensors"
        cached = _load(path, len(net.units)) if use_cache else None
        if cached is None:
            cached = tuple(scorer.score(net, calibration))
            if use_cache:
                tensors = {f"unit_{i}": torch.from_numpy(s) for i, s in enumerate(cached)}
                atomic_write_bytes(path, save(tensors, metadata={"scorer": name}))
        raw[name] = cached
    return ImportanceScores(raw, unit_names=tuple(u.name for u in net.units))


def _load(path: Path, units: int) -> tuple[np.ndarray, ...] | None:

    if not path.exists():
        return None
    try:
        tensors = load_file(str(path))
        return tuple(tensors[f"unit_{i}"].numpy() for i in range(units))
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        log.warning("score cache %s is unreadable (%s); recomputing.", path, err)
        return None
