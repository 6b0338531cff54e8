"""The optimisation problem: thresholds -> partition -> (costs, accuracy) -> objective values.

Racing (`--racing F`, opt-in): a trial's accuracy is first measured on a fixed, seeded random
F-share of the test images. Its costs are exact by then, so its most optimistic objective
vector is known: the costs, and for `acc` the aggregate of an upper confidence bound on every
failure set's Top-1 (`accuracy_upper_bound`). The rest of the images are evaluated only when
that vector could still reach the Pareto front, i.e. no fully evaluated feasible trial of the
study dominates it and it meets the constraints. Otherwise the trial is *raced out*: its `acc`
is the subset's estimate, and its record says so (`RaceRecord`). A raced-out trial is
dominated by construction, so it never enters the front.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dse._objectives import Objective, TrialOutcome
from dse._record import RaceRecord
from dse._settings import RUN_SETTINGS, SEARCH_ONLY_SETTINGS, SETTINGS_SCHEMA, StudySettings
from dse._space import (
    SEARCH_METHODS,
    MethodSpace,
    SearchablePartitioner,
    SearchSpace,
    ThresholdSpace,
    build_space,
)
from dse._workbench import Workbench, open_workbench
from robustdice_core import (
    BASELINES,
    FailureAccuracy,
    FailureEvaluator,
    InvalidParameterError,
    Partition,
    failure_sets,
)
from robustdice_core.costs import (
    CostEstimate,
    ModelCostInfo,
    Schedule,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.io import hash_json
from robustdice_core.zoo import LabelledImages

__all__ = [
    "BASELINE_NAMES",
    "RACE_Z",
    "Evaluation",
    "FrontValues",
    "RobustnessProblem",
    "StagedEvaluator",
    "accuracy_upper_bound",
]

BASELINE_NAMES = ("lop", "cdc", "replication")  # registry keys, in table order
# One-sided normal quantile of the racing bound: the full-set Top-1 of one failure set lies
# above its bound with probability about 0.13 % (a few failure sets per trial: under 1 %).
RACE_Z = 3.0
RACE_SEED = 0  # the racing subset: the same images in every process of a study
# Objective values of the study's fully evaluated feasible trials, ``[n, objectives]``.
FrontValues = Callable[[], np.ndarray]


def accuracy_upper_bound(
    correct: np.ndarray, images: int, population: int, z: float = RACE_Z
) -> np.ndarray:
    """Upper confidence bounds on the Top-1 over ``population`` images, per failure set,
    from ``correct`` hits on a uniform random sample of ``images`` of them.

    Wilson's score bound with the finite-population correction (the sample is drawn without
    replacement: the effective sample size is ``images (N - 1) / (N - images)``), capped by
    what the unseen images could add at most. Exact (the sample's value) when the sample is
    the population.
    """
    p = np.asarray(correct, dtype=np.float64) / images
    if images >= population:
        return p
    n = images * (population - 1) / (population - images)
    centre = p + z**2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    wilson = (centre + spread) / (1 + z**2 / n)
    most = (np.asarray(correct) + (population - images)) / population
    return np.clip(np.minimum(wilson, most), p, 1.0)


class StagedEvaluator:
    """The test set in two fixed parts: a seeded random subset (raced first) and the rest.

    The counts of the two parts add up to the whole test set's, so a trial that is
    finished costs no more than one evaluated at once.
    """

    def __init__(self, bench: Workbench, fraction: float, *, seed: int = RACE_SEED) -> None:
        test = bench.require_data().test
        total = len(test)
        if total < 2:
            raise InvalidParameterError(
                f"`--racing` needs at least 2 test images, got {total}; raise `--test-size`."
            )
        self.subset = min(total - 1, max(1, math.ceil(fraction * total)))
        self.test_images = total
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        first, rest = order[: self.subset].sort().values, order[self.subset :].sort().values
        self.first: FailureEvaluator = bench.evaluator_for(_part(test, first))
        self.rest: FailureEvaluator = bench.evaluator_for(_part(test, rest))

    def accuracy(self, partition: Partition, sets: Sequence[tuple[int, ...]]) -> FailureAccuracy:
        """Top-1 over the whole test set (both parts)."""
        counts = self.first.correct_counts(partition, sets)
        return self.finish(partition, sets, counts)

    def finish(
        self, partition: Partition, sets: Sequence[tuple[int, ...]], first: np.ndarray
    ) -> FailureAccuracy:
        """The whole test set's Top-1, given the subset's correct counts ``first``."""
        counts = first + self.rest.correct_counts(partition, sets)
        return _accuracy(partition, sets, counts / self.test_images)


def _part(data: LabelledImages, index: torch.Tensor) -> LabelledImages:
    return LabelledImages(data.images[index], data.labels[index])


def _accuracy(
    partition: Partition, sets: Sequence[tuple[int, ...]], fractions: np.ndarray
) -> FailureAccuracy:
    return FailureAccuracy(
        num_devices=partition.num_devices,
        failure_sets=tuple(tuple(sorted(f)) for f in sets),
        accuracy=tuple(float(a) for a in fractions),
    )


@dataclass(frozen=True)
class Evaluation:
    """One evaluated partition: its outcome, objective and constraint values, timings."""

    partition: Partition
    outcome: TrialOutcome
    values: tuple[float, ...]
    constraints: tuple[float, ...]  # <= 0 is feasible
    seconds: dict[str, float] = field(default_factory=dict)
    race: RaceRecord | None = None  # how a raced trial's accuracy was obtained

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)


class RobustnessProblem:
    """Builds everything a study needs once (scores, evaluation data, cost tables)."""

    def __init__(self, settings: StudySettings, *, bench: Workbench | None = None) -> None:
        self.settings = settings
        self.objectives: tuple[Objective, ...] = settings.objective_specs
        self.accuracy = settings.accuracy
        self.needs_accuracy = settings.needs_accuracy
        sizes = settings.failure_sizes() if self.needs_accuracy else []
        self.failure_sets = failure_sets(settings.devices, sizes)
        self.device = load_device_profile(settings.device_profile)
        self.link = load_link_profile(settings.link_profile)
        self.bench = bench or open_workbench(
            settings.model,
            weights=Path(settings.weights) if settings.weights else None,
            data=Path(settings.data) if settings.data else None,
            score_names=settings.scores,
            calibration_size=settings.calibration_size,
            test_size=settings.test_size,
            need_accuracy=self.needs_accuracy,
            device=settings.device,
            batch_size=settings.batch_size,
        )
        self.cost_info = ModelCostInfo.from_traced(self.bench.traced)
        self.search = SearchSpace(tuple(self._method_space(m) for m in settings.search_methods))
        # the first method's (a single-method study's only) parameters and partitioner
        self.space: ThresholdSpace = self.search.methods[0].space
        self.partitioner: SearchablePartitioner = self.search.methods[0].partitioner
        self.race: StagedEvaluator | None = None
        if settings.racing is not None and self.needs_accuracy:
            self.race = StagedEvaluator(self.bench, settings.racing)

    def _method_space(self, name: str) -> MethodSpace:
        method = SEARCH_METHODS.get(name)
        partitioner, upper = method.make(
            self.bench.scores.points(self.bench.score_names), self.settings.method_options
        )
        space = build_space(
            self.bench.net.units,
            upper,
            tie=self.settings.tie,
            threshold_range=self.settings.threshold_range if method.uses_threshold_range else None,
            prefix=method.prefix,
        )
        return MethodSpace(name, space, partitioner)

    def for_settings(self, settings: StudySettings) -> RobustnessProblem:
        """The same problem under settings that differ only in how it is searched (sampler,
        seed, population) or constrained; reuses the loaded model, scores and data."""
        other = set(settings.differences(self.settings))
        other |= {k for k in RUN_SETTINGS if getattr(settings, k) != getattr(self.settings, k)}
        if not other <= SEARCH_ONLY_SETTINGS:
            raise InvalidParameterError(
                f"settings {sorted(other - SEARCH_ONLY_SETTINGS)} change the problem itself."
            )
        clone = copy.copy(self)
        clone.settings = settings
        return clone

    @property
    def constraint_names(self) -> tuple[str, ...]:
        return self.settings.constraint_names

    def evaluate_params(
        self, params: Sequence[float] | Mapping[str, float], *, front: FrontValues | None = None
    ) -> Evaluation:
        """Evaluate one point of the search space: by parameter name, or one value per
        parameter in `SearchSpace.names` order (thresholds for RobustDiCE, protected fractions
        for budgeted, and first the method switch in a mixed study); with racing on,
        ``front`` gives the values it must be able to reach (see the module docstring)."""
        start = time.perf_counter()
        if not isinstance(params, Mapping):
            params = dict(zip(self.search.names, params, strict=True))
        partition = self.search.partition_for(params, self.settings.devices)
        return self.evaluate_partition(
            partition, partition_seconds=time.perf_counter() - start, front=front
        )

    def evaluate_partition(
        self,
        partition: Partition,
        *,
        partition_seconds: float = 0.0,
        front: FrontValues | None = None,
    ) -> Evaluation:
        """Costs, then accuracy (raced when racing is on and ``front`` is given)."""
        start = time.perf_counter()
        costs = self.estimate(partition)
        cost_end = time.perf_counter()
        accuracy, race = self._accuracy(partition, costs, front)
        end = time.perf_counter()
        outcome = TrialOutcome(costs, accuracy, partition.replication_factor)
        return Evaluation(
            partition=partition,
            outcome=outcome,
            values=self._values(outcome),
            constraints=tuple(self._constraints(outcome)),
            seconds={
                "partition": partition_seconds,
                "costs": cost_end - start,
                "accuracy": end - cost_end,
            },
            race=race,
        )

    def estimate(
        self,
        partition: Partition,
        schedule: Schedule | None = None,
        in_flight: int | None = None,
    ) -> CostEstimate:
        """The cost model's figures for ``partition`` on the study's cluster, under
        ``schedule`` (default: the study's own, with its images in flight)."""
        if schedule is None:
            schedule, in_flight = self.settings.schedule, self.settings.in_flight
        return estimate_costs(
            partition,
            self.cost_info,
            self.device,
            self.link,
            dtype=self.settings.dtype,
            schedule=schedule,
            in_flight=in_flight,
        )

    def _values(self, outcome: TrialOutcome) -> tuple[float, ...]:
        return tuple(o.value(outcome, self.accuracy) for o in self.objectives)

    def _accuracy(
        self, partition: Partition, costs: CostEstimate, front: FrontValues | None
    ) -> tuple[FailureAccuracy | None, RaceRecord | None]:
        if not self.needs_accuracy:
            return None, None
        if self.race is None:
            return self.bench.require_evaluator().evaluate(partition, self.failure_sets), None
        if front is None:  # baselines, `dse evaluate`: the whole test set
            return self.race.accuracy(partition, self.failure_sets), None
        return self._raced(partition, costs, front, self.race)

    def _raced(
        self,
        partition: Partition,
        costs: CostEstimate,
        front: FrontValues,
        race: StagedEvaluator,
    ) -> tuple[FailureAccuracy, RaceRecord]:
        """The subset first; the rest only if the optimistic outcome could reach the front."""
        sets = self.failure_sets
        first = race.first.correct_counts(partition, sets)
        upper = accuracy_upper_bound(first, race.subset, race.test_images)
        optimistic = TrialOutcome(
            costs, _accuracy(partition, sets, upper), partition.replication_factor
        )
        values = self._values(optimistic)
        acc_upper = next(v for o, v in zip(self.objectives, values) if o.needs_accuracy)
        out = not self._could_reach(optimistic, values, front)
        record = RaceRecord(out, race.subset, race.test_images, acc_upper)
        if out:
            return _accuracy(partition, sets, first / race.subset), record
        return race.finish(partition, sets, first), record

    def _could_reach(
        self, optimistic: TrialOutcome, values: tuple[float, ...], front: FrontValues
    ) -> bool:
        """Feasible, and not dominated by any fully evaluated feasible trial."""
        if any(c > 0 for c in self._constraints(optimistic)):
            return False
        points = np.asarray(front(), dtype=float).reshape(-1, len(values))
        signs = np.array([-1.0 if o.maximize else 1.0 for o in self.objectives])
        mine, theirs = signs * np.asarray(values), signs * points
        dominated = (theirs <= mine).all(axis=1) & (theirs < mine).any(axis=1)
        return not bool(dominated.any())

    def _constraints(self, outcome: TrialOutcome) -> list[float]:
        values = []
        if self.settings.max_mem_mb is not None:
            values.append(outcome.costs.max_memory_mb - self.settings.max_mem_mb)
        if self.settings.min_fps is not None:
            values.append(self.settings.min_fps - outcome.costs.fps)
        return values

    def baselines(self) -> dict[str, Evaluation]:
        """LOP, CDC and full replication under the same objectives, by registry name."""
        sizes = self.bench.unit_sizes
        return {
            name: self.evaluate_partition(
                BASELINES.get(name)().partition(sizes, self.settings.devices)
            )
            for name in BASELINE_NAMES
        }

    def check_feasible(self, baselines: dict[str, Evaluation]) -> None:
        """Fail early when a constraint is out of reach of every partition.

        LOP (no replication) has the least per-device memory of any partition that covers
        every neuron. The fastest partition is LOP or full replication (which exchanges
        nothing), both ends of the threshold space.
        """
        lop = baselines["lop"].outcome.costs
        fastest = max(lop.fps, baselines["replication"].outcome.costs.fps)
        max_mem, min_fps = self.settings.max_mem_mb, self.settings.min_fps
        if max_mem is not None and lop.max_memory_mb > max_mem:
            raise InvalidParameterError(
                f"no partition can meet `--max-mem-mb {max_mem:g}`: even LOP needs "
                f"{lop.max_memory_mb:.1f} MB per device; raise the limit or add devices."
            )
        if min_fps is not None and fastest < min_fps:
            raise InvalidParameterError(
                f"no partition can meet `--min-fps {min_fps:g}`: the fastest reaches "
                f"{fastest:.1f} FPS; lower the target or use a faster device or link profile."
            )

    def fingerprints(self) -> dict[str, str]:
        """Hashes of what a study's numbers depend on beyond its settings' names and paths."""
        test = self.bench.data.test.fingerprint() if self.bench.data is not None else "none"
        return {
            "weights": self.bench.model.weights_hash(),
            "test_data": test,
            "device_profile": hash_json(self.device.to_dict()),
            "link_profile": hash_json(self.link.to_dict()),
            "objective_definitions": f"schema {SETTINGS_SCHEMA}",
        }
