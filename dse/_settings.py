"""The settings that define a study; stored with it so a resume can check them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from dse._samplers import DEFAULT_SAMPLER
from robustdice_core import hash_json

__all__ = ["StudySettings"]


@dataclass(frozen=True)
class StudySettings:
    model: str
    devices: int = 4
    objectives: tuple[str, ...] = ("acc", "mem", "energy")
    acc_metric: str = "worst"
    failures: tuple[int, ...] = (1,)
    fail_prob: float = 0.1
    scores: tuple[str, ...] = ("s1", "s2", "s3")
    tie: str = "none"
    threshold_range: tuple[float, float] | None = None
    clustering: str = "dendrogram"
    device_profile: str = "jetson_xavier_nx_15w"
    link_profile: str = "gigabit_ethernet"
    dtype: str = "fp32"
    max_mem_mb: float | None = None
    min_fps: float | None = None
    sampler: str = DEFAULT_SAMPLER
    population: int = 24
    seed: int = 0
    weights: str | None = None
    data: str | None = None
    calibration_size: int | None = None
    test_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**values)

    def key(self) -> str:
        """A short hash of the settings, used in default study names."""
        return hash_json(self.to_dict())[:8]

    def default_study_name(self) -> str:
        return f"{self.model}-nd{self.devices}-{'-'.join(self.objectives)}-{self.key()}"

    def differences(self, other: StudySettings) -> list[str]:
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if mine[k] != theirs.get(k)]
