"""The hook for Table 2's measured columns: runtime meters, registered by name.

`local-runtime` (`studies._runtime_meter`) runs each configuration on local node processes.
A `ResourceSpec` with ``meter=None`` leaves its ``measured_*``
columns empty and says so; once a meter is registered here, ``meter="<name>"`` fills them
with what that meter measured, labelled by its source. Nothing is ever estimated into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dse import Workbench
from robustdice_core import Registry
from robustdice_core.partition import Partition
from studies._spec import Configuration, ResourceSpec

__all__ = ["RESOURCE_METERS", "MeasuredResources", "ResourceMeter"]


@dataclass(frozen=True)
class MeasuredResources:
    """What a meter measured for one configuration (None: that figure was not measured)."""

    max_energy_j: float | None
    fps: float | None
    max_memory_mb: float | None
    source: str  # which meter, e.g. "local runtime, RAPL" or "Jetson INA3221"


class ResourceMeter(Protocol):
    """Runs ``partition`` of the bench's model on the runtime and measures it."""

    def __call__(
        self,
        bench: Workbench,
        partition: Partition,
        configuration: Configuration,
        spec: ResourceSpec,
    ) -> MeasuredResources: ...


RESOURCE_METERS: Registry[ResourceMeter] = Registry("resource meter")
