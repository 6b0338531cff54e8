"""Compare partitioning methods on accuracy under failures (the paper's Fig. 4).

Two ways to line the methods up:

- at given RobustDiCE thresholds: RobustDiCE at those thresholds, its controls at its own
  replication factor (see below), the baselines as they are;
- at a matched replication factor R (``replication=R``, docs/per_byte.md): RobustDiCE at the
  thresholds that give R (`match_replication`), every other scored method at R too, so all
  of them spend the same memory on copies.

The controls take their replication from RobustDiCE's partition: random clustering keeps its
cluster sizes, LOP + random copies its per-unit number of extra copies. Budgeted allocates
the same total (``R``, or RobustDiCE's factor) by its own rule: model-wide by the raw s3
divergences when they were computed, else the same fraction in every unit. Tiered does the
same with 3 and 2 copies and picks the split between the tiers by Top-1 under the request's
tier failures (1 and 2 failed devices) on the calibration images, never the test images.
Seeded controls are evaluated once per seed and reported as the mean over seeds of each
seed's worst / mean / best Top-1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dse._problem import BASELINE_NAMES
from dse._workbench import Workbench
from robustdice_core import InvalidParameterError, Registry
from robustdice_core.failures import FailureAccuracy, FailureEvaluator, SizeStats, failure_sets
from robustdice_core.partition import (
    BASELINES,
    PARTITIONERS,
    Budgeted,
    Graded,
    LOPRandomCopies,
    Partition,
    RandomClustering,
    RobustDiCE,
    Tiered,
    check_replication_target,
    match_replication,
)

__all__ = [
    "COMPARISONS",
    "DEFAULT_METHODS",
    "DEFAULT_SEEDS",
    "MATCHED_METHODS",
    "ComparisonRequest",
    "MethodResult",
    "SeedMean",
    "compare_methods",
]

DEFAULT_METHODS = ("robustdice", *BASELINE_NAMES)  # registry keys, in table order
MATCHED_METHODS = ("robustdice", "budgeted", "random-clustering", "random-copies", *BASELINE_NAMES)
DEFAULT_SEEDS = 5
MODEL_WIDE_SCORE = "s3"  # raw divergences measure the same output: comparable across units
TIER_FAILURES = (1, 2)  # the tiered split maximises worst + mean Top-1 summed over these


@dataclass(frozen=True)
class SeedMean:
    """Accuracy of a seeded method: per number of failed devices, the mean over seeds of each
    seed's worst, mean and best Top-1 (so ``worst`` is the expected worst case of one draw)."""

    runs: tuple[FailureAccuracy, ...]

    def sizes(self) -> list[int]:
        return self.runs[0].sizes()

    def by_size(self, failed: int) -> SizeStats:
        stats = [run.by_size(failed) for run in self.runs]
        return SizeStats(
            failed,
            float(np.mean([s.worst for s in stats])),
            float(np.mean([s.mean for s in stats])),
            float(np.mean([s.best for s in stats])),
            stats[0].count,
        )

    def expected(self, fail_prob: float) -> float:
        return float(np.mean([run.expected(fail_prob) for run in self.runs]))


@dataclass(frozen=True)
class MethodResult:
    """One method's partitions (one per seed for seeded controls) and their accuracy."""

    name: str  # registry key
    label: str  # for tables
    partitions: tuple[Partition, ...]
    accuracies: tuple[FailureAccuracy, ...]
    target: float | None = None  # the replication factor it was matched to, if any

    @property
    def partition(self) -> Partition:
        return self.partitions[0]

    @property
    def accuracy(self) -> FailureAccuracy | SeedMean:
        return self.accuracies[0] if len(self.accuracies) == 1 else SeedMean(self.accuracies)

    @property
    def replication_factor(self) -> float:
        return float(np.mean([p.replication_factor for p in self.partitions]))

    def to_dict(self, fail_prob: float) -> dict[str, object]:
        accuracy = self.accuracy
        data: dict[str, object] = {
            "method": self.name,
            "label": self.label,
            "replication_factor": self.replication_factor,
            "replication_target": self.target,
            "seeds": len(self.partitions),
            "thresholds": list(self.partition.thresholds),
            "options": dict(self.partition.options),
            "by_failed_devices": [vars(accuracy.by_size(k)) for k in accuracy.sizes()],
            "fail_prob": fail_prob,
        }
        if accuracy.sizes() == list(range(self.partition.num_devices)):
            data["expected_accuracy"] = accuracy.expected(fail_prob)
        return data


@dataclass(frozen=True)
class ComparisonRequest:
    """What to compare: a threshold vector or a replication target, and the methods' knobs."""

    num_devices: int
    thresholds: Sequence[float] | float | None = None
    replication: float | None = None
    clustering: str = "dendrogram"
    seeds: int = DEFAULT_SEEDS
    copies: int = 2

    def __post_init__(self) -> None:
        if (self.thresholds is None) == (self.replication is None):
            raise InvalidParameterError(
                "give either RobustDiCE `--thresholds` or a `--replication` target, not both."
            )
        if self.replication is not None:
            check_replication_target(self.replication, self.num_devices)
        if self.seeds < 1:
            raise InvalidParameterError(f"`--seeds` must be at least 1, got {self.seeds}.")
        if self.copies < 1:
            raise InvalidParameterError(f"`--copies` must be at least 1, got {self.copies}.")


class _Comparison:
    """One request on one workbench; RobustDiCE's reference partition is built once."""

    def __init__(self, bench: Workbench, request: ComparisonRequest) -> None:
        self.bench = bench
        self.request = request

    @cached_property
    def points(self) -> list[np.ndarray]:
        return self.bench.scores.points(self.bench.score_names)

    @cached_property
    def robustdice(self) -> RobustDiCE:
        return self.bench.robustdice(self.request.clustering)

    @cached_property
    def reference(self) -> Partition:
        """RobustDiCE at the request's thresholds, or at those matching its target."""
        request = self.request
        if request.replication is not None:
            return match_replication(
                self.robustdice, request.replication, request.num_devices
            ).partition
        assert request.thresholds is not None  # ComparisonRequest checks one of the two
        return self.robustdice.partition_for(request.thresholds, request.num_devices)

    @property
    def target(self) -> float:
        """The replication factor every scored method aims at."""
        if self.request.replication is not None:
            return self.request.replication
        return self.reference.replication_factor

    @cached_property
    def calibration(self) -> FailureEvaluator:
        """An evaluator on the calibration images (for choices made before testing)."""
        return self.bench.evaluator_for(self.bench.require_data().calibration)

    @property
    def seeds(self) -> range:
        return range(self.request.seeds)


Builder = Callable[[_Comparison], list[Partition]]
COMPARISONS: Registry[Builder] = Registry("compared method")


@COMPARISONS.register("robustdice")
def _robustdice(c: _Comparison) -> list[Partition]:
    return [c.reference]


@COMPARISONS.register("random-clustering")
def _random_clustering(c: _Comparison) -> list[Partition]:
    clustering = c.robustdice.clustering
    thresholds = c.reference.thresholds
    return [
        RandomClustering(c.points, thresholds, clustering=clustering, seed=seed).partition(
            c.bench.unit_sizes, c.request.num_devices
        )
        for seed in c.seeds
    ]


@COMPARISONS.register("random-copies")
def _random_copies(c: _Comparison) -> list[Partition]:
    return [
        LOPRandomCopies.like(c.reference, seed=seed).partition(
            c.bench.unit_sizes, c.request.num_devices
        )
        for seed in c.seeds
    ]


@COMPARISONS.register("budgeted")
def _budgeted(c: _Comparison) -> list[Partition]:
    nd = c.request.num_devices
    partitioner = Budgeted(c.points, copies=c.request.copies)
    most = float(min(c.request.copies, nd))  # every neuron on c devices
    model_scores = c.bench.scores.raw.get(MODEL_WIDE_SCORE)
    return [partitioner.for_replication(min(c.target, most), nd, model_scores=model_scores)]


@COMPARISONS.register("tiered")
def _tiered(c: _Comparison) -> list[Partition]:
    nd = c.request.num_devices
    partitioner = Tiered(c.points)
    most = float(min(partitioner.copies[0], nd))
    failures = [k for k in TIER_FAILURES if k < nd]
    sets = failure_sets(nd, failures)

    def objective(partition: Partition) -> float:
        accuracy = c.calibration.evaluate(partition, sets)
        return sum(accuracy.by_size(k).worst + accuracy.by_size(k).mean for k in failures)

    model_scores = c.bench.scores.raw.get(MODEL_WIDE_SCORE)
    best, _ = partitioner.search(min(c.target, most), nd, objective, model_scores=model_scores)
    return [best]


@COMPARISONS.register("graded")
def _graded(c: _Comparison) -> list[Partition]:
    nd = c.request.num_devices
    model_scores = c.bench.scores.raw.get(MODEL_WIDE_SCORE)
    target = min(max(c.target, 1.0), float(nd))
    return [Graded(c.points).for_replication(target, nd, model_scores=model_scores)]


def _baseline(name: str) -> Builder:
    def build(c: _Comparison) -> list[Partition]:
        return [BASELINES.get(name)().partition(c.bench.unit_sizes, c.request.num_devices)]

    return build


for _name in BASELINES.names():
    COMPARISONS.add(_name, _baseline(_name))


def _check_tiered(num_devices: int, replication: float | None) -> None:
    most = min(3, num_devices)  # Tiered's default copies (3, 2), capped at ND
    if num_devices < 3:
        raise InvalidParameterError(
            f"tiered needs at least 3 devices (3 and 2 copies), got {num_devices}."
        )
    if replication is not None and replication > most:
        raise InvalidParameterError(
            f"`--replication` {replication:g} is more than tiered's {most} copies per neuron."
        )


def compare_methods(
    bench: Workbench,
    num_devices: int,
    thresholds: Sequence[float] | float | None = None,
    *,
    clustering: str = "dendrogram",
    baselines: Sequence[str] = BASELINE_NAMES,
    methods: Sequence[str] | None = None,
    replication: float | None = None,
    seeds: int = DEFAULT_SEEDS,
    copies: int = 2,
    failures: Sequence[int] | None = None,
) -> list[MethodResult]:
    """Evaluate ``methods`` (registry keys of `PARTITIONERS`) on every failure set of the
    sizes ``failures`` (default: 0..ND-1).

    Without ``methods``: RobustDiCE and ``baselines``, or with ``replication`` every method
    (`MATCHED_METHODS`). ``thresholds`` and ``replication`` exclude each other.
    """
    request = ComparisonRequest(num_devices, thresholds, replication, clustering, seeds, copies)
    if methods is None:
        methods = MATCHED_METHODS if replication is not None else ("robustdice", *baselines)
    names = PARTITIONERS.parse_list(list(methods), "--methods")
    builders = [COMPARISONS.get(name) for name in names]  # every method has a builder
    if replication is not None and "budgeted" in names and replication > min(copies, num_devices):
        raise InvalidParameterError(
            f"`--replication` {replication:g} needs `--copies` >= {int(np.ceil(replication))} "
            f"for budgeted (each protected neuron gets at most {copies} copies)."
        )
    if "tiered" in names:
        _check_tiered(num_devices, replication)
    sets = failure_sets(num_devices, range(num_devices) if failures is None else failures)
    comparison = _Comparison(bench, request)
    evaluator = bench.require_evaluator()
    results = []
    for name, build in zip(names, builders, strict=True):
        partitions = build(comparison)
        results.append(
            MethodResult(
                name=name,
                label=PARTITIONERS.get(name).label,
                partitions=tuple(partitions),
                accuracies=tuple(evaluator.evaluate(p, sets) for p in partitions),
                target=None if name in BASELINES else comparison.target,
            )
        )
    return results
