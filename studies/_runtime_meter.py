"""`local-runtime`: Table 2's measured columns from the runtime, on this machine.

Each configuration's partition is written as a bundle (temporary folder) and run by
`runtime.run_local` on its ND nodes as processes on loopback: FPS as the client measured it,
memory as the largest node's peak RSS (the process: the torch runtime included), energy only
when a node's meter measured it (INA3221, NVML or RAPL; the cost model's estimate never goes
into a measured column).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch

from dse import Workbench
from robustdice_core.bundle import write_bundle
from robustdice_core.partition import Partition
from runtime import LaunchOptions, curve_keypairs, run_local
from studies._meters import RESOURCE_METERS, MeasuredResources
from studies._spec import Configuration, ResourceSpec

__all__ = ["LOCAL_RUNTIME_IMAGES", "local_runtime_meter"]

LOCAL_RUNTIME_IMAGES = 100


def local_runtime_meter(
    bench: Workbench,
    partition: Partition,
    configuration: Configuration,
    spec: ResourceSpec,
    *,
    images: int = LOCAL_RUNTIME_IMAGES,
) -> MeasuredResources:
    """Run ``partition`` of the bench's model on local nodes and measure it."""
    inputs = _images(bench, images)
    nd = partition.num_devices
    with tempfile.TemporaryDirectory(prefix="robustdice-table2-") as tmp:
        bundle = Path(tmp) / "bundle"
        keys = curve_keypairs(nd + 1)
        write_bundle(bundle, bench.model, partition, keys=keys[:nd], client_key=keys[nd])
        summary, _ = run_local(bundle, inputs, None, options=LaunchOptions(), simulate=False)
    rss = [n.peak_rss_mb for n in summary.nodes if not math.isnan(n.peak_rss_mb)]
    measured = [
        (n.energy_j_per_image, n.energy_source)
        for n in summary.nodes
        if n.energy_j_per_image is not None and n.energy_source.startswith("measured:")
    ]
    energy_source = ", ".join(sorted({s for _, s in measured})) or "no energy meter here"
    return MeasuredResources(
        max_energy_j=max((e for e, _ in measured), default=None),
        fps=summary.fps,
        max_memory_mb=max(rss, default=None),
        source=(
            f"local runtime: {nd} processes on loopback of this machine, {len(inputs)} images, "
            f"fp32; memory = peak RSS per process (torch included); energy: {energy_source}"
        ),
    )


def _images(bench: Workbench, count: int) -> torch.Tensor:
    """The bench's test images, or seeded random inputs (FPS and memory need no labels)."""
    if bench.data is not None:
        return bench.data.test.images[:count]
    generator = torch.Generator().manual_seed(0)
    return torch.randn((count, *bench.model.spec.input_shape), generator=generator)


RESOURCE_METERS.add("local-runtime", local_runtime_meter)
