"""The cost model (DESIGN 3.7): per-device memory, FLOPs, traffic and energy; latency and FPS.

Figures are *estimated* from the model graph, a `Partition` and device / link profiles (TOML
data files with a source for every number); the runtime's meters can later replace them with
*measured* ones, which is why every result carries its `Provenance`.
"""

from __future__ import annotations

from robustdice_core.costs._estimate import (
    DEFAULT_IN_FLIGHT,
    MB,
    CostEstimate,
    DeviceCost,
    Exchange,
    Precision,
    Provenance,
    Schedule,
    describe_schedule,
    estimate_costs,
)
from robustdice_core.costs._model_info import ModelCostInfo
from robustdice_core.costs._profiles import (
    PROFILES_ENV,
    DeviceProfile,
    LinkProfile,
    LossMode,
    Medium,
    ProfileKind,
    ProfileValue,
    device_profiles,
    link_profiles,
    load_device_profile,
    load_link_profile,
    load_profile,
)

__all__ = [
    "DEFAULT_IN_FLIGHT",
    "MB",
    "PROFILES_ENV",
    "CostEstimate",
    "DeviceCost",
    "DeviceProfile",
    "Exchange",
    "LinkProfile",
    "LossMode",
    "Medium",
    "ModelCostInfo",
    "Precision",
    "ProfileKind",
    "ProfileValue",
    "Provenance",
    "Schedule",
    "describe_schedule",
    "device_profiles",
    "estimate_costs",
    "link_profiles",
    "load_device_profile",
    "load_link_profile",
    "load_profile",
]
