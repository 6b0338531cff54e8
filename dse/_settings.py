"""The settings that define a study: typed, validated once where they enter, stored with it.

`StudySettings` is built at the boundary (the CLI, a test, a benchmark) from strings or typed
values, the way Optuna turns ``direction: str | StudyDirection`` into a `StudyDirection`:
names become registry keys that are known to exist, closed sets become enums, lists become
tuples. An invalid value raises a one-line `InvalidParameterError` naming its flag. Deep code
then trusts the values and never parses them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from enum import Enum
from math import comb
from typing import Any

import torch

from dse._objectives import OBJECTIVES, AccuracyMetric, AccuracySettings, Objective
from dse._samplers import DEFAULT_SAMPLER, SAMPLERS
from dse._scales import DEFAULT_SCALE, THRESHOLD_SCALES
from dse._space import (
    METHOD_CHOICES,
    SEARCH_METHODS,
    TIE_MODES,
    MethodOptions,
    SearchMethod,
    check_threshold_range,
)
from robustdice_core import InvalidParameterError, parse_enum
from robustdice_core._device import ComputeDevice, check_batch_size
from robustdice_core.costs import (
    DEFAULT_IN_FLIGHT,
    Precision,
    Schedule,
    describe_schedule,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.importance import SCORERS
from robustdice_core.io import hash_json
from robustdice_core.partition import CLUSTERINGS
from robustdice_core.zoo import DEFAULT_MODEL, MODELS

__all__ = [
    "DEFAULT_METHOD",
    "MAX_DEVICES",
    "MAX_FAILURE_SETS",
    "RUN_SETTINGS",
    "SEARCH_ONLY_SETTINGS",
    "StudySettings",
    "check_devices",
    "check_fail_prob",
]

MAX_FAILURE_SETS = 4096  # every set is a masked forward over the test images
MAX_DEVICES = 64  # a cluster of edge boards; far beyond it nothing here would finish
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seed range
# Settings that change how a problem is searched or constrained, not the problem itself.
SEARCH_ONLY_SETTINGS = frozenset({"sampler", "seed", "population", "max_mem_mb", "min_fps"})
# Settings of how this process computes, not of what: results mean the same whatever they
# are (docs/semantics.md, "Devices"), so they are neither stored with a study nor part of its
# name, and every process of a study chooses its own.
RUN_SETTINGS = frozenset({"device", "batch_size"})
# Bumped when a stored value changes meaning (2: `mem` is the partition's own memory), so
# that default study names never resume a study whose values mean something else.
SETTINGS_SCHEMA = 2
DEFAULT_METHOD = "robustdice"  # stored only when another method is chosen: old keys hold


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a study (see `dse optimize --help` for each value)."""

    model: str = DEFAULT_MODEL
    devices: int = 4
    objectives: tuple[str, ...] = ("acc", "mem", "energy")
    acc_metric: AccuracyMetric = AccuracyMetric.worst
    failures: tuple[int, ...] = (1,)
    fail_prob: float = 0.1
    scores: tuple[str, ...] = ("s1", "s2", "s3")
    tie: str = "none"
    threshold_range: tuple[float, float] | None = None
    clustering: str = "dendrogram"
    device_profile: str = "jetson_xavier_nx_15w"
    link_profile: str = "gigabit_ethernet"
    dtype: Precision = Precision.FP32
    max_mem_mb: float | None = None
    min_fps: float | None = None
    sampler: str = DEFAULT_SAMPLER
    population: int = 24
    seed: int = 0
    weights: str | None = None
    data: str | None = None
    calibration_size: int | None = None
    test_size: int | None = None
    method: str = DEFAULT_METHOD  # what is searched: a `METHOD_CHOICES` key
    racing: float | None = None  # share of the test images a trial is raced on first
    device: ComputeDevice = ComputeDevice()  # a run setting (`RUN_SETTINGS`)
    batch_size: int | None = None  # samples per batched forward; None: from memory
    threshold_scale: str = DEFAULT_SCALE  # how RobustDiCE thresholds are searched
    schedule: Schedule = Schedule.BARRIER  # which runtime schedule `fps` and `energy` assume
    in_flight: int | None = None  # images in flight under the overlapped schedule

    def __post_init__(self) -> None:
        typed = {
            "objectives": OBJECTIVES.parse_list(self.objectives, "--objectives"),
            "scores": SCORERS.parse_list(self.scores, "--scores"),
            "acc_metric": parse_enum(AccuracyMetric, self.acc_metric, "--acc-metric"),
            "dtype": parse_enum(Precision, self.dtype, "--dtype"),
            "failures": tuple(sorted(set(_int_tuple(self.failures, "--failures")))),
            "threshold_range": _range(self.threshold_range),
            "weights": _optional_text(self.weights),
            "data": _optional_text(self.data),
            "device": ComputeDevice.parse(self.device),
            "racing": _optional_float(self.racing, "--racing"),
            "schedule": parse_enum(Schedule, self.schedule, "--schedule"),
        }
        for name, value in typed.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "in_flight", _in_flight(self.schedule, self.in_flight))
        self._validate()

    def _validate(self) -> None:
        check_devices(self.devices, [])
        MODELS.get(self.model)
        SAMPLERS.get(self.sampler)
        TIE_MODES.get(self.tie)
        CLUSTERINGS.get(self.clustering)
        self._validate_method()
        load_device_profile(self.device_profile)
        load_link_profile(self.link_profile)
        if not self.failures:
            raise InvalidParameterError("`--failures` must name at least one number of failures.")
        bad = [k for k in self.failures if not 1 <= k < self.devices]
        if bad:
            raise InvalidParameterError(
                f"`--failures` values must be in 1..{self.devices - 1} for {self.devices} "
                f"devices, got {bad[0]}."
            )
        check_devices(self.devices, self.failure_sizes() if self.needs_accuracy else [])
        check_fail_prob(self.fail_prob)
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidParameterError(f"`--seed` must be in 0..{MAX_SEED}, got {self.seed}.")
        if self.population < 4:
            raise InvalidParameterError(
                f"`--population` must be at least 4, got {self.population}."
            )
        for flag, limit in (("--max-mem-mb", self.max_mem_mb), ("--min-fps", self.min_fps)):
            if limit is not None and not limit > 0:
                raise InvalidParameterError(f"`{flag}` must be positive, got {limit}.")
        for flag, size in (
            ("--calibration-size", self.calibration_size),
            ("--test-size", self.test_size),
        ):
            if size is not None and size < 1:
                raise InvalidParameterError(f"`{flag}` must be at least 1, got {size}.")
        self._validate_run()

    def _validate_method(self) -> None:
        """The method(s), and the threshold options only where thresholds are searched."""
        methods = [SEARCH_METHODS.get(m) for m in METHOD_CHOICES.get(self.method)]
        THRESHOLD_SCALES.get(self.threshold_scale)
        thresholds = any(m.uses_threshold_range for m in methods)
        if self.threshold_range is not None and not thresholds:
            raise InvalidParameterError(
                f"`--threshold-range` sets RobustDiCE thresholds; `--method {self.method}` "
                "searches values in [0, 1]: leave it out."
            )
        if self.threshold_scale != DEFAULT_SCALE and not thresholds:
            raise InvalidParameterError(
                f"`--threshold-scale` sets how RobustDiCE thresholds are searched; `--method "
                f"{self.method}` searches values in [0, 1]: leave it out."
            )
        if self.threshold_range is not None and self.threshold_scale != DEFAULT_SCALE:
            raise InvalidParameterError(
                f"`--threshold-range` gives raw thresholds, which only `--threshold-scale "
                f"{DEFAULT_SCALE}` searches; `{self.threshold_scale}` searches [0, 1] per unit: "
                "leave one of them out."
            )

    def _validate_run(self) -> None:
        """Racing, the device (which must exist here) and the batch size."""
        if self.racing is not None:
            if not 0.0 < self.racing < 1.0:
                raise InvalidParameterError(
                    f"`--racing` must be a fraction of the test images in (0, 1), e.g. 0.2, "
                    f"got {self.racing}."
                )
            if not self.needs_accuracy:
                raise InvalidParameterError(
                    "`--racing` races the `acc` objective; add `acc` to `--objectives` or "
                    "leave `--racing` out."
                )
        self.device.resolve()
        check_batch_size(self.batch_size)

    # ----------------------------------------------------------------- derived values
    @property
    def search_methods(self) -> tuple[str, ...]:
        """The `SEARCH_METHODS` keys a trial may use (one, or several with `--method both`)."""
        return METHOD_CHOICES.get(self.method)

    @property
    def search_method(self) -> SearchMethod:
        """The first (for a single-method study, the only) search method."""
        return SEARCH_METHODS.get(self.search_methods[0])

    @property
    def method_options(self) -> MethodOptions:
        return MethodOptions(self.clustering, self.copies, self.threshold_scale)

    @property
    def copies(self) -> int:
        """Copies of a protected neuron for budgeted: k + 1 for the most failures covered."""
        return min(max(self.failures) + 1, self.devices)

    @property
    def objective_specs(self) -> tuple[Objective, ...]:
        return tuple(OBJECTIVES.get(name) for name in self.objectives)

    @property
    def constraint_names(self) -> tuple[str, ...]:
        """The constraints a trial records, in order (`record_constraints`)."""
        limits = (("max_mem_mb", self.max_mem_mb), ("min_fps", self.min_fps))
        return tuple(name for name, limit in limits if limit is not None)

    @property
    def needs_accuracy(self) -> bool:
        return any(o.needs_accuracy for o in self.objective_specs)

    @property
    def torch_device(self) -> torch.device:
        """Where this process computes (``auto`` resolved on this machine)."""
        return self.device.resolve()

    @property
    def schedule_text(self) -> str:
        """How the cost objectives assume the runtime orders images, in words."""
        return describe_schedule(self.in_flight)

    @property
    def accuracy(self) -> AccuracySettings:
        return AccuracySettings(self.acc_metric, self.failures, self.fail_prob)

    def failure_sizes(self) -> list[int]:
        """The failure-set sizes a trial evaluates (no failure always included)."""
        if self.acc_metric is AccuracyMetric.expected:
            return list(range(self.devices))
        return sorted({0, *self.failures})

    # ----------------------------------------------------------------- storage
    def replace(self, **changes: Any) -> StudySettings:
        """A copy with ``changes`` applied (validated like any new settings); a new
        ``schedule`` without ``in_flight`` takes that schedule's default."""
        values = self._values()
        if "schedule" in changes and "in_flight" not in changes:
            values["in_flight"] = None
        return StudySettings(**{**values, **changes})

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """What defines the study: every setting but the `RUN_SETTINGS`, JSON-able."""
        data = asdict(self)
        for key in RUN_SETTINGS:
            del data[key]
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
            elif isinstance(value, Enum):
                data[key] = value.value
        # as before these fields existed: the same study keys
        if data["method"] == DEFAULT_METHOD:
            del data["method"]
        if data["threshold_scale"] == DEFAULT_SCALE:
            del data["threshold_scale"]
        if data["racing"] is None:
            del data["racing"]
        if data["schedule"] == Schedule.BARRIER.value:
            del data["schedule"], data["in_flight"]
        return data

    @classmethod
    def parse(cls, **options: Any) -> StudySettings:
        """Settings from loosely typed values, as a command line gives them: ``"acc,mem"``
        for a tuple of names, ``"worst"`` for an enum, ``"1,2"`` for integers, a path."""
        return cls(**options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """Settings stored by `to_dict` (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls.parse(**{k: v for k, v in data.items() if k in known})

    def key(self) -> str:
        """A short hash of the settings, used in default study names."""
        return hash_json({"schema": SETTINGS_SCHEMA, **self.to_dict()})[:8]

    def default_study_name(self) -> str:
        return f"{self.model}-nd{self.devices}-{'-'.join(self.objectives)}-{self.key()}"

    def differences(self, other: StudySettings) -> list[str]:
        mine, theirs = self.to_dict(), other.to_dict()
        keys = [*mine, *(k for k in theirs if k not in mine)]
        return [k for k in keys if mine.get(k) != theirs.get(k)]


def check_devices(devices: int, failure_counts: Sequence[int]) -> None:
    """2 <= ND <= MAX_DEVICES, and not so many failure sets that evaluating them would not
    finish (counted with an early stop: no huge numbers are built or printed)."""
    if not 2 <= devices <= MAX_DEVICES:
        raise InvalidParameterError(
            f"`--devices` must be in 2..{MAX_DEVICES} (boards in the cluster), got {devices}."
        )
    sets = 0
    for k in failure_counts:
        sets += comb(devices, k)
        if sets > MAX_FAILURE_SETS:
            raise InvalidParameterError(
                f"{devices} devices give more than {MAX_FAILURE_SETS} failure sets to evaluate "
                "(each is a masked forward over the test images); use fewer `--devices` or "
                "fewer `--failures`."
            )


def check_fail_prob(fail_prob: float) -> None:
    if not 0.0 <= fail_prob <= 1.0:
        raise InvalidParameterError(f"`--fail-prob` must be in [0, 1], got {fail_prob}.")


def _in_flight(schedule: Schedule, in_flight: int | str | None) -> int | None:
    """None under the barrier schedule (one image at a time); K >= 1 under the overlapped
    one (default `DEFAULT_IN_FLIGHT`, the runtime's)."""
    if schedule is Schedule.BARRIER:
        if in_flight not in (None, 1, "1"):
            raise InvalidParameterError(
                f"`--in-flight` is {in_flight}, but `--schedule barrier` runs one image at a "
                "time; add `--schedule overlapped` to search FPS with several in flight."
            )
        return None
    if in_flight is None:
        return DEFAULT_IN_FLIGHT
    try:
        k = int(in_flight)
    except (TypeError, ValueError):
        k = 0
    if isinstance(in_flight, bool) or k < 1 or str(k) != str(in_flight).strip():
        raise InvalidParameterError(f"`--in-flight` must be an integer >= 1, got {in_flight!r}.")
    return k


def _int_tuple(values: str | Sequence[int], flag: str) -> tuple[int, ...]:
    parts = values.split(",") if isinstance(values, str) else list(values)
    try:
        return tuple(int(str(v).strip()) for v in parts if str(v).strip())
    except ValueError as err:
        raise InvalidParameterError(
            f"`{flag}` must be integers separated by commas, got {values!r}."
        ) from err


def _range(value: str | Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        low, high = (float(v) for v in parts)
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"`--threshold-range` must be LOW,HIGH (e.g. 0,1.2), got {value!r}."
        ) from err
    check_threshold_range((low, high))
    return low, high


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_float(value: object, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value))
    except ValueError as err:
        raise InvalidParameterError(f"`{flag}` must be a number, got {value!r}.") from err
