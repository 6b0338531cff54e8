"""Table 2: max per-device energy, throughput and max per-device memory of system
configurations, estimated by the cost model (moved here from ``robustdice_core.costs``, so
the cost model depends on neither the zoo nor the scores).

Every configuration (a method on ND devices) is partitioned from the run's scores and
costed with `estimate_costs`; ratios to the reference configuration (full replication on 4
devices) make the tiny embedded models comparable with the paper's trends. Memory is the
partition's own (weights and activations on the fullest device, without the profile's
runtime constant), the closest to the paper's "memory reported by the CNN code".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from robustdice_core import Registry
from robustdice_core.costs import (
    CostEstimate,
    ModelCostInfo,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.partition import BASELINES, CLUSTERINGS, Partition, RobustDiCE
from robustdice_core.units import TracedModel
from robustdice_core.zoo import MODELS
from studies._bench import open_run
from studies._kinds import Progress
from studies._meters import RESOURCE_METERS, MeasuredResources
from studies._paper import PAPER_TABLE2, paper_model
from studies._plan import ModelRun
from studies._result import ModelSource, StudyData
from studies._spec import Configuration, ResourceSpec
from studies._table2_claims import table2_findings

__all__ = ["Costed", "compute_table2", "cost_configurations", "needs_data", "resource_rows"]

FIGURES = ("max_energy_j", "fps", "max_memory_mb")  # the paper's three columns


@dataclass(frozen=True)
class Costed:
    """One configuration, its partition and the cost model's estimate."""

    configuration: Configuration
    partition: Partition
    estimate: CostEstimate


Builder = Callable[[Configuration, Sequence[int], list[np.ndarray], ResourceSpec], Partition]
_BUILDERS: Registry[Builder] = Registry("Table 2 method")


@_BUILDERS.register("robustdice")
def _robustdice(
    config: Configuration, sizes: Sequence[int], points: list[np.ndarray], spec: ResourceSpec
) -> Partition:
    thresholds = spec.thresholds if config.thresholds is None else config.thresholds
    clustering = CLUSTERINGS.get(spec.clustering)()
    return RobustDiCE(points, clustering=clustering).partition_for(thresholds, config.devices)


def _baseline(name: str) -> Builder:
    def build(
        config: Configuration, sizes: Sequence[int], points: list[np.ndarray], spec: ResourceSpec
    ) -> Partition:
        return BASELINES.get(name)().partition(sizes, config.devices)

    return build


for _name in BASELINES.names():
    _BUILDERS.add(_name, _baseline(_name))


def needs_data(run: ModelRun) -> bool:
    """Costs need the architecture only; the scores use the data where there is some."""
    return run.data is not None or MODELS.get(run.name).embedded


def cost_configurations(
    traced: TracedModel, points: list[np.ndarray], spec: ResourceSpec
) -> list[Costed]:
    """Every configuration of ``spec`` partitioned on ``points`` and costed."""
    info = ModelCostInfo.from_traced(traced)
    sizes = [int(n) for n in info.num_neurons]
    device = load_device_profile(spec.device_profile)
    link = load_link_profile(spec.link_profile)
    costed = []
    for config in spec.configurations:
        partition = _BUILDERS.get(config.method)(config, sizes, points, spec)
        estimate = estimate_costs(partition, info, device, link, dtype=spec.dtype)
        costed.append(Costed(config, partition, estimate))
    return costed


def resource_rows(
    model: str,
    seed: int,
    costed: Sequence[Costed],
    spec: ResourceSpec,
    measured: Sequence[MeasuredResources | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per configuration: ours estimated (and measured, when a meter ran), the
    paper's, and each figure relative to the ``spec.reference`` configuration."""
    measured = measured or [None] * len(costed)
    rows = [_row(model, seed, c, m) for c, m in zip(costed, measured, strict=True)]
    reference = next(r for r in rows if r["configuration"] == spec.reference)
    columns = [f"{source}_{figure}" for source in ("estimated", "paper") for figure in FIGURES]
    for row in rows:
        for column in (*columns, "estimated_max_weight_mb"):
            ref = reference[column]
            row[f"{column}_vs_ref"] = row[column] / ref if ref else np.nan
    return rows


def _row(
    model: str, seed: int, costed: Costed, measured: MeasuredResources | None
) -> dict[str, Any]:
    config, estimate = costed.configuration, costed.estimate
    paper = PAPER_TABLE2.get(paper_model(model) or "", {}).get(config.paper_label or "")
    return {
        "model": model,
        "seed": seed,
        "configuration": config.label,
        "method": config.method,
        "devices": config.devices,
        "replication_factor": costed.partition.replication_factor,
        "estimated_max_energy_j": estimate.max_energy_j,
        "estimated_fps": estimate.fps,
        "estimated_max_memory_mb": estimate.max_partition_memory_mb,
        "estimated_max_weight_mb": estimate.max_weight_mb,
        "estimated_max_memory_with_runtime_mb": estimate.max_memory_mb,
        "measured_max_energy_j": measured.max_energy_j if measured else None,
        "measured_fps": measured.fps if measured else None,
        "measured_max_memory_mb": measured.max_memory_mb if measured else None,
        "measured_source": measured.source if measured else None,
        "paper_configuration": config.paper_label or "",
        "paper_max_energy_j": paper.max_energy_j if paper else np.nan,
        "paper_fps": paper.fps if paper else np.nan,
        "paper_max_memory_mb": paper.max_memory_mb if paper else np.nan,
    }


def compute_table2(spec: ResourceSpec, runs: Sequence[ModelRun], progress: Progress) -> StudyData:
    meter = RESOURCE_METERS.get(spec.meter) if spec.meter is not None else None
    rows: list[dict[str, Any]] = []
    sources, notes = [], []
    for run in runs:
        progress(f"{run.name}: loading the model and its scores")
        bench = open_run(run, spec, spec.scores, need_accuracy=needs_data(run))
        sources.append(ModelSource.of(bench))
        notes += [f"{run.name}: {note}" for note in bench.notes]
        points = bench.scores.points(bench.score_names)
        costed = cost_configurations(bench.traced, points, spec)
        measured = None
        if meter is not None:
            measured = [meter(bench, c.partition, c.configuration, spec) for c in costed]
        rows += resource_rows(run.model, run.seed, costed, spec, measured)
        progress(f"{run.name}: {len(costed)} configurations costed")
    table = pd.DataFrame(rows)
    return StudyData(
        table=table,
        findings=tuple(table2_findings(table)),
        provenance=_provenance(spec),
        sources=tuple(sources),
        notes=tuple(notes),
    )


def _provenance(spec: ResourceSpec) -> tuple[str, ...]:
    measured = (
        f"Measured: by the runtime meter `{spec.meter}` (measured_* columns)."
        if spec.meter is not None
        else "Measured: nothing yet. The measured_* columns stay empty until a runtime meter "
        "is registered in studies.RESOURCE_METERS; no estimate is put in them."
    )
    return (
        f"Estimated by the cost model (docs/cost_model.md): {spec.device_profile} devices on "
        f"{spec.link_profile}, {spec.dtype}; energy = max J per image per device, FPS = "
        "1 / latency (sync points are barriers), memory = the partition's weights and "
        "activations on the fullest device (MB = 2^20 bytes).",
        measured,
        f"RobustDiCE: threshold {spec.thresholds:g} for every unit on the normalised "
        f"{'+'.join(spec.scores)} scale (s1 only for a model without data), {spec.clustering} "
        "clustering.",
        "Paper: measured on Jetson Xavier NX boards over a Gigabit switch with ImageNet-size "
        f"torchvision models. *_vs_ref columns divide by the `{spec.reference}` row: compare "
        "those ratios, not absolute values, for the embedded models.",
    )
