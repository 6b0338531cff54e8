"""Cheap checks of user settings, run before anything is loaded or stored."""

from __future__ import annotations

from math import comb

from dse._objectives import AccuracyMetric, parse_acc_metric, parse_objectives
from dse._samplers import SAMPLERS
from dse._settings import StudySettings
from dse._space import TIE_MODES, check_threshold_range
from robustdice_core import InvalidParameterError
from robustdice_core.costs import load_device_profile, load_link_profile
from robustdice_core.importance import parse_score_names
from robustdice_core.partition import CLUSTERINGS
from robustdice_core.zoo import MODELS

__all__ = ["MAX_FAILURE_SETS", "check_devices", "check_fail_prob", "validate_settings"]

DTYPES = ("fp32", "fp16")
MAX_FAILURE_SETS = 4096  # every set is a masked forward over the test images


def check_devices(devices: int, failure_counts: list[int]) -> None:
    """ND >= 2, and not so many that enumerating the failure sets would not finish."""
    if devices < 2:
        raise InvalidParameterError(f"`--devices` must be at least 2, got {devices}.")
    sets = sum(comb(devices, k) for k in failure_counts)
    if sets > MAX_FAILURE_SETS:
        raise InvalidParameterError(
            f"{devices} devices give {sets} failure sets to evaluate (at most "
            f"{MAX_FAILURE_SETS}); use fewer devices or fewer `--failures`."
        )


def check_fail_prob(fail_prob: float) -> None:
    if not 0.0 <= fail_prob <= 1.0:
        raise InvalidParameterError(f"`--fail-prob` must be in [0, 1], got {fail_prob}.")


def validate_settings(settings: StudySettings) -> None:
    """Raise a one-line error for any unknown name or out-of-range value."""
    MODELS.get(settings.model)
    objectives = parse_objectives(settings.objectives)
    parse_score_names(settings.scores)
    metric = parse_acc_metric(settings.acc_metric)
    SAMPLERS.get(settings.sampler)
    TIE_MODES.get(settings.tie)
    CLUSTERINGS.get(settings.clustering)
    load_device_profile(settings.device_profile)
    load_link_profile(settings.link_profile)
    if settings.dtype not in DTYPES:
        raise InvalidParameterError(f"`--dtype` must be one of {', '.join(DTYPES)}.")
    if not settings.failures:
        raise InvalidParameterError("`--failures` must name at least one number of failures.")
    bad = [k for k in settings.failures if not 1 <= k < settings.devices]
    if bad:
        raise InvalidParameterError(
            f"`--failures` values must be in 1..{settings.devices - 1} for {settings.devices} "
            f"devices, got {bad[0]}."
        )
    if any(o.needs_accuracy for o in objectives):
        counts = (
            list(range(settings.devices))
            if metric is AccuracyMetric.expected
            else sorted({0, *settings.failures})
        )
        check_devices(settings.devices, counts)
    check_fail_prob(settings.fail_prob)
    if settings.population < 4:
        raise InvalidParameterError(
            f"`--population` must be at least 4, got {settings.population}."
        )
    for name, value in (("--max-mem-mb", settings.max_mem_mb), ("--min-fps", settings.min_fps)):
        if value is not None and not value > 0:
            raise InvalidParameterError(f"`{name}` must be positive, got {value}.")
    for name, size in (
        ("--calibration-size", settings.calibration_size),
        ("--test-size", settings.test_size),
    ):
        if size is not None and size < 1:
            raise InvalidParameterError(f"`{name}` must be at least 1, got {size}.")
    if settings.threshold_range is not None:
        check_threshold_range(settings.threshold_range)
