"""`local-runtime`: Table 2's measured columns from the runtime, on this machine.

Each configuration's partition is written as a bundle (temporary folder) and run by
`runtime.run_local` on its ND nodes as processes on loopback: FPS as the client measured it,
memory as the largest node's peak RSS (the process: the torch runtime included), energy only
when a node's meter measured it (INA3221, NVML or RAPL; the cost model's estimate never goes
into a measured column). The reading of a run is `dse measure`'s (`measured_resources`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from dse import Workbench
from dse._measure import bench_images, measured_resources
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
    inputs = bench_images(bench, images)
    nd = partition.num_devices
    with tempfile.TemporaryDirectory(prefix="robustdice-table2-") as tmp:
        bundle = Path(tmp) / "bundle"
        keys = curve_keypairs(nd + 1)
        write_bundle(bundle, bench.model, partition, keys=keys[:nd], client_key=keys[nd])
        summary, _ = run_local(bundle, inputs, None, options=LaunchOptions(), simulate=False)
    rss, energy, energy_source = measured_resources(summary)
    return MeasuredResources(
        max_energy_j=energy,
        fps=summary.fps,
        max_memory_mb=rss,
        source=(
            f"local runtime: {nd} processes on loopback of this machine, {len(inputs)} images, "
            f"fp32; memory = peak RSS per process (torch included); energy: {energy_source}"
        ),
    )


RESOURCE_METERS.add("local-runtime", local_runtime_meter)
