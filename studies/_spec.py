"""What a study declares: plain, frozen records, one kind per experiment shape.

A spec says *what* to run (models, training seeds, device counts, failure scenarios,
methods, score subsets, replication targets, profiles); the runner and the kind's compute
function (`studies._kinds`) say *how*. Register new studies in `STUDIES`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar

from robustdice_core import InvalidParameterError, Registry, RobustDiceError
from robustdice_core.importance import SCORERS
from robustdice_core.partition import BASELINES, PARTITIONERS, check_replication_target

__all__ = [
    "ALL_SCORE_SUBSETS",
    "EMBEDDED_MODELS",
    "STUDIES",
    "AblationSpec",
    "Configuration",
    "FailureSweepSpec",
    "ResourceSpec",
    "StudySpec",
    "StudyUnavailableError",
    "TimeoutSpec",
    "subset_label",
]

EMBEDDED_MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
SCORES = ("s1", "s2", "s3")
# every non-empty subset, singles first, in the paper's Table 1 order
ALL_SCORE_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    subset for size in (1, 2, 3) for subset in itertools.combinations(SCORES, size)
)


class StudyUnavailableError(RobustDiceError):
    """The study needs a part of the project that does not exist yet."""


def subset_label(subset: tuple[str, ...]) -> str:
    """``("s1", "s3")`` -> ``"s1+s3"`` (the paper's spelling)."""
    return "+".join(subset)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """What every study declares.

    Attributes:
        name: registry key (`dse study run NAME`).
        paper: the table or figure of the paper it reproduces, e.g. ``"Table 1"``.
        title: one line for `dse study list` and the page.
        models: registered model names (embedded by default; ``--model`` replaces them).
        seeds: training seeds of the embedded models (``NAME@seedN``); torchvision models
            have one set of weights and use seed 0.
        calibration_size, test_size: images (None: the model's default split).
    """

    kind: ClassVar[str]

    name: str
    paper: str
    title: str
    models: tuple[str, ...] = EMBEDDED_MODELS
    seeds: tuple[int, ...] = (0,)
    calibration_size: int | None = None
    test_size: int | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise InvalidParameterError(f"study `{self.name}`: `models` must name one model.")
        check_seeds(self.seeds, "seeds")


def check_seeds(seeds: tuple[int, ...], flag: str) -> None:
    """Non-empty, whole numbers from 0, each once."""
    if not seeds:
        raise InvalidParameterError(f"`{flag}` must name at least one training seed.")
    bad = [s for s in seeds if not isinstance(s, int) or s < 0]
    if bad:
        raise InvalidParameterError(
            f"`{flag}` must be whole numbers from 0, got {bad[0]!r}; e.g. `--seeds 0,1,2`."
        )
    if len(set(seeds)) != len(seeds):
        raise InvalidParameterError(f"`{flag}` lists a seed twice: {list(seeds)}.")


@dataclass(frozen=True, kw_only=True)
class AblationSpec(StudySpec):
    """Importance-score subsets compared at equal replication factor (Table 1).

    Every subset's RobustDiCE is matched to each replication target, and ``methods`` are
    built from the same scores at the same target. The importance-blind ``controls`` (the
    expensive part: several placement seeds each) run on ``control_scores`` only.
    """

    kind: ClassVar[str] = "score-ablation"

    num_devices: int = 4
    failed: int = 1  # devices down: Top-1 over every failure set of this size
    score_subsets: tuple[tuple[str, ...], ...] = ALL_SCORE_SUBSETS
    methods: tuple[str, ...] = ("robustdice", "budgeted")
    controls: tuple[str, ...] = ("random-clustering", "random-copies")
    control_scores: tuple[str, ...] = SCORES
    replication_targets: tuple[float, ...] = (1.25,)
    control_seeds: int = 3  # seeds per random control (mean over seeds)
    copies: int = 2  # budgeted: copies of a protected neuron
    clustering: str = "dendrogram"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.failed < self.num_devices:
            raise InvalidParameterError(
                f"study `{self.name}`: `failed` must be in 1..{self.num_devices - 1}, "
                f"got {self.failed}."
            )
        if not self.score_subsets or not self.replication_targets or not self.methods:
            raise InvalidParameterError(
                f"study `{self.name}` needs score subsets, methods and replication targets."
            )
        PARTITIONERS.parse_list([*self.methods, *self.controls], "methods")
        for subset in (*self.score_subsets, self.control_scores):
            SCORERS.parse_list(subset, "score_subsets")
        for target in self.replication_targets:
            check_replication_target(target, self.num_devices)


@dataclass(frozen=True, kw_only=True)
class FailureSweepSpec(StudySpec):
    """Top-1 under every number of failed devices, for several device counts (Fig. 4)."""

    kind: ClassVar[str] = "failure-sweep"

    devices: tuple[int, ...] = (4, 3, 2)
    methods: tuple[str, ...] = ("robustdice", "lop", "cdc", "replication")
    thresholds: float = 0.3  # RobustDiCE: one threshold for every unit
    scores: tuple[str, ...] = SCORES
    clustering: str = "dendrogram"

    def __post_init__(self) -> None:
        super().__post_init__()
        PARTITIONERS.parse_list(self.methods, "methods")
        SCORERS.parse_list(self.scores, "scores")
        bad = [nd for nd in self.devices if nd < 2]
        if not self.devices or bad:
            raise InvalidParameterError(
                f"study `{self.name}`: `devices` must be counts of at least 2, got "
                f"{list(self.devices)}."
            )


@dataclass(frozen=True)
class Configuration:
    """One system configuration of Table 2: a method on ``devices`` devices.

    ``paper_label`` names the paper's row it corresponds to (None: not in the paper).
    """

    method: str  # registry key of PARTITIONERS (robustdice or a baseline)
    devices: int
    label: str
    paper_label: str | None = None
    thresholds: float | None = None  # RobustDiCE only; None: the spec's thresholds


@dataclass(frozen=True, kw_only=True)
class ResourceSpec(StudySpec):
    """Per-device energy, throughput and memory of system configurations (Table 2).

    Figures are estimated by the cost model; ``meter`` names a registered runtime meter for
    the measured columns (None: not measured, the columns stay empty).
    """

    kind: ClassVar[str] = "resources"

    configurations: tuple[Configuration, ...] = field(default_factory=tuple)
    thresholds: float = 0.3
    scores: tuple[str, ...] = SCORES
    clustering: str = "dendrogram"
    device_profile: str = "jetson_xavier_nx_15w"
    link_profile: str = "gigabit_ethernet"
    dtype: str = "fp16"
    reference: str = "QMR"  # the configuration the ratios are taken against
    meter: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        SCORERS.parse_list(self.scores, "scores")
        methods = {"robustdice", *BASELINES.names()}
        for config in self.configurations:
            if config.method not in methods:
                raise InvalidParameterError(
                    f"study `{self.name}`: configuration `{config.label}` uses method "
                    f"`{config.method}`; choose one of: {', '.join(sorted(methods))}."
                )
        labels = [c.label for c in self.configurations]
        if not labels or self.reference not in labels:
            raise InvalidParameterError(
                f"study `{self.name}`: `reference` {self.reference!r} must be one of the "
                f"configurations' labels {labels}."
            )


@dataclass(frozen=True, kw_only=True)
class TimeoutSpec(StudySpec):
    """Latency per image against the failure detector's timeout under one failure (Fig. 3).

    The model's RobustDiCE partition on ``devices`` devices is deployed as a bundle and run on
    local node processes (`dse._timeout_study`): per timeout one stream of ``images`` test
    images with node ``fail_rank`` killed before image ``fail_at``, plus one with no failure.
    ``link``: an emulated link profile (None: plain loopback).
    """

    kind: ClassVar[str] = "timeout"

    devices: int = 4
    fail_rank: int = 1
    fail_at: int | None = None  # None: half way (each stream's first half: no failure)
    timeouts_us: tuple[float, ...] = (10, 50, 100, 500, 1000, 5000, 10000, 30000)
    images: int = 120
    in_flight: int = 1
    thresholds: float = 0.3
    scores: tuple[str, ...] = SCORES
    clustering: str = "dendrogram"
    link: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        SCORERS.parse_list(self.scores, "scores")
        if not 0 <= self.fail_rank < self.devices or self.devices < 2:
            raise InvalidParameterError(
                f"study `{self.name}`: `fail_rank` must be in 0..{self.devices - 1} of at "
                f"least 2 `devices`, got {self.fail_rank} of {self.devices}."
            )
        if self.fail_at is not None and not 0 <= self.fail_at < self.images:
            raise InvalidParameterError(
                f"study `{self.name}`: `fail_at` must be an image before `images` "
                f"({self.images}), got {self.fail_at}."
            )
        if not self.timeouts_us or not all(10 <= t <= 1e6 for t in self.timeouts_us):
            raise InvalidParameterError(
                f"study `{self.name}`: `timeouts_us` must lie in 10..1e6 us, got "
                f"{list(self.timeouts_us)}."
            )
        if self.in_flight < 1:
            raise InvalidParameterError(
                f"study `{self.name}`: `in_flight` must be at least 1, got {self.in_flight}."
            )


STUDIES: Registry[StudySpec] = Registry("study")
