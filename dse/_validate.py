"""Cheap checks of a study's settings, before anything is loaded or stored."""

from __future__ import annotations

from robustdice_core.costs import load_device_profile, load_link_profile

from dse._objectives import parse_acc_metric, parse_objectives
from dse._samplers import SAMPLERS
from dse._settings import StudySettings
from dse._space import TIE_MODES
from robustdice_core import InvalidParameterError
from robustdice_core.importance import parse_score_names
from robustdice_core.partition import CLUSTERINGS
from robustdice_core.zoo import MODELS

__all__ = ["validate_settings"]

DTYPES = ("fp32", "fp16")


def validate_settings(settings: StudySettings) -> None:
    """Raise a one-line error for any unknown name or out-of-range value."""
    MODELS.get(settings.model)
    parse_objectives(settings.objectives)
    parse_score_names(settings.scores)
    parse_acc_metric(settings.acc_metric)
    SAMPLERS.get(settings.sampler)
    TIE_MODES.get(settings.tie)
    CLUSTERINGS.get(settings.clustering)
    load_device_profile(settings.device_profile)
    load_link_profile(settings.link_profile)
    if settings.dtype not in DTYPES:
        raise InvalidParameterError(f"`--dtype` must be one of {', '.join(DTYPES)}.")
    if settings.devices < 2:
        raise InvalidParameterError(f"`--devices` must be at least 2, got {settings.devices}.")
    if not 0.0 <= settings.fail_prob <= 1.0:
        raise InvalidParameterError(f"`--fail-prob` must be in [0, 1], got {settings.fail_prob}.")
    if settings.population < 4:
        raise InvalidParameterError(
            f"`--population` must be at least 4, got {settings.population}."
        )
    for name, value in (("--max-mem-mb", settings.max_mem_mb), ("--min-fps", settings.min_fps)):
        if value is not None and not value > 0:
            raise InvalidParameterError(f"`{name}` must be positive, got {value}.")
    if settings.threshold_range is not None:
        low, high = settings.threshold_range
        if not 0.0 <= low < high < float("inf"):
            raise InvalidParameterError(
                f"`--threshold-range` must satisfy 0 <= low < high, got {low},{high}."
            )
