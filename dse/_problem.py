"""The optimisation problem: thresholds -> partition -> (costs, accuracy) -> objective values."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dse._objectives import Objective, TrialOutcome
from dse._settings import SEARCH_ONLY_SETTINGS, SETTINGS_SCHEMA, StudySettings
from dse._space import SearchablePartitioner, ThresholdSpace, build_space
from dse._workbench import Workbench, open_workbench
from robustdice_core import BASELINES, InvalidParameterError, Partition, failure_sets
from robustdice_core.costs import (
    ModelCostInfo,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.io import hash_json

__all__ = ["BASELINE_NAMES", "Evaluation", "RobustnessProblem"]

BASELINE_NAMES = ("lop", "cdc", "replication")  # registry keys, in table order


@dataclass(frozen=True)
class Evaluation:
    """One evaluated partition: its outcome, objective and constraint values, timings."""

    partition: Partition
    outcome: TrialOutcome
    values: tuple[float, ...]
    constraints: tuple[float, ...]  # <= 0 is feasible
    seconds: dict[str, float] = field(default_factory=dict)

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
        )
        self.cost_info = ModelCostInfo.from_traced(self.bench.traced)
        method = settings.search_method
        self.partitioner: SearchablePartitioner
        self.partitioner, upper = method.make(
            self.bench.scores.points(self.bench.score_names),
            settings.clustering,
            settings.copies,
        )
        self.space: ThresholdSpace = build_space(
            self.bench.net.units,
            upper,
            tie=settings.tie,
            threshold_range=settings.threshold_range,
            prefix=method.prefix,
        )

    def for_settings(self, settings: StudySettings) -> RobustnessProblem:
        """The same problem under settings that differ only in how it is searched (sampler,
        seed, population) or constrained; reuses the loaded model, scores and data."""
        other = settings.differences(self.settings)
        if not set(other) <= SEARCH_ONLY_SETTINGS:
            raise InvalidParameterError(
                f"settings {sorted(set(other) - SEARCH_ONLY_SETTINGS)} change the problem itself."
            )
        clone = copy.copy(self)
        clone.settings = settings
        return clone

    @property
    def constraint_names(self) -> tuple[str, ...]:
        return self.settings.constraint_names

    def evaluate_params(self, params: Sequence[float]) -> Evaluation:
        """Evaluate one point of the search space (one value per space parameter: thresholds
        for RobustDiCE, protected fractions for budgeted)."""
        start = time.perf_counter()
        partition = self.partitioner.partition_for(
            self.space.thresholds(params), self.settings.devices
        )
        return self.evaluate_partition(partition, partition_seconds=time.perf_counter() - start)

    def evaluate_partition(
        self, partition: Partition, *, partition_seconds: float = 0.0
    ) -> Evaluation:
        start = time.perf_counter()
        costs = estimate_costs(
            partition, self.cost_info, self.device, self.link, dtype=self.settings.dtype
        )
        cost_end = time.perf_counter()
        accuracy = None
        if self.needs_accuracy:
            accuracy = self.bench.require_evaluator().evaluate(partition, self.failure_sets)
        end = time.perf_counter()
        outcome = TrialOutcome(costs, accuracy, partition.replication_factor)
        return Evaluation(
            partition=partition,
            outcome=outcome,
            values=tuple(o.value(outcome, self.accuracy) for o in self.objectives),
            constraints=tuple(self._constraints(outcome)),
            seconds={
                "partition": partition_seconds,
                "costs": cost_end - start,
                "accuracy": end - cost_end,
            },
        )

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
