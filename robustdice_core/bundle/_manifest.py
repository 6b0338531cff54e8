"""`Manifest`: what a bundle holds, where it came from, and the hash of every other file."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from robustdice_core._errors import CorruptFileError, InvalidParameterError, MissingResourceError
from robustdice_core.bundle._fields import (
    get_float,
    get_int,
    get_list,
    get_mapping,
    get_optional_int,
    get_optional_str,
    get_str,
    where,
)
from robustdice_core.bundle._layout import TensorLayout
from robustdice_core.bundle._shards import expected_shapes
from robustdice_core.costs import CostEstimate
from robustdice_core.partition import Partition

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_NAME",
    "ExpectedMetrics",
    "Manifest",
    "Origin",
    "WeightsInfo",
    "read_json",
    "read_manifest",
]

BUNDLE_FORMAT = "robustdice-bundle"
BUNDLE_VERSION = 1  # bumped when a field changes meaning; readers refuse newer bundles
MANIFEST_NAME = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_sha256(value: str, path: str) -> str:
    if not _SHA256.fullmatch(value):
        raise CorruptFileError(f"field `{path}` must be a sha256 hex digest, got {value!r}.")
    return value


@dataclass(frozen=True)
class WeightsInfo:
    """The model weights the shards were cut from (`LoadedModel.weights_hash`)."""

    sha256: str
    source: str  # e.g. "trained:digits (cached)", "published:...", "file:/w.pth"
    trained: bool  # False: random architecture-only weights (costs only, no accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "source": self.source, "trained": self.trained}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> WeightsInfo:
        trained = data.get("trained")
        if not isinstance(trained, bool):
            raise CorruptFileError(f"field `{where(prefix, 'trained')}` must be true or false.")
        sha = _check_sha256(get_str(data, "sha256", prefix), where(prefix, "sha256"))
        return cls(sha, get_str(data, "source", prefix), trained)


@dataclass(frozen=True)
class Origin:
    """The study, trial and method a bundle was made from (all None but ``method`` for a
    bundle made straight from a partition)."""

    method: str
    study: str | None = None
    storage: str | None = None
    trial: int | None = None
    pick: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "study": self.study,
            "storage": self.storage,
            "trial": self.trial,
            "pick": self.pick,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> Origin:
        return cls(
            method=get_str(data, "method", prefix),
            study=get_optional_str(data, "study", prefix),
            storage=get_optional_str(data, "storage", prefix),
            trial=get_optional_int(data, "trial", prefix),
            pick=get_optional_str(data, "pick", prefix),
        )


@dataclass(frozen=True)
class ExpectedMetrics:
    """What the deployed partition should achieve: the cost model's figures (memory, energy
    per device, latency, FPS, with their profiles and provenance) and, when the study
    measured it, Top-1 % per failure set (by `dse._record.failure_set_label`)."""

    costs: CostEstimate
    replication_factor: float
    top1_pct: tuple[tuple[str, float], ...] = ()
    accuracy_provenance: str | None = None  # e.g. "simulated: masked model, 50 test images"

    def to_dict(self) -> dict[str, Any]:
        return {
            "replication_factor": self.replication_factor,
            "costs": self.costs.to_dict(),
            "top1_pct": dict(self.top1_pct),
            "accuracy_provenance": self.accuracy_provenance,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> ExpectedMetrics:
        costs = get_mapping(data, "costs", prefix)
        try:
            estimate = CostEstimate.from_dict(dict(costs))
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(
                f"field `{where(prefix, 'costs')}` is malformed ({err!r})."
            ) from err
        top1 = get_mapping(data, "top1_pct", prefix)
        return cls(
            costs=estimate,
            replication_factor=get_float(data, "replication_factor", prefix),
            top1_pct=tuple((str(k), get_float(top1, k, where(prefix, "top1_pct"))) for k in top1),
            accuracy_provenance=get_optional_str(data, "accuracy_provenance", prefix),
        )


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: the bundle's contents and provenance (docs/bundle.md)."""

    model: str
    weights: WeightsInfo
    partition: Partition
    layout: TensorLayout
    origin: Origin
    created_utc: str
    packages: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...]  # (path relative to the bundle, sha256), sorted
    expected: ExpectedMetrics | None = None
    format_version: int = BUNDLE_VERSION

    def __post_init__(self) -> None:
        self.layout.check_units(self.partition.unit_sizes)
        for path, digest in self.files:
            _check_relative(path)
            _check_sha256(digest, f"files.{path}")

    @property
    def num_devices(self) -> int:
        return self.partition.num_devices

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.partition.thresholds

    @property
    def file_hashes(self) -> dict[str, str]:
        return dict(self.files)

    def shard_bytes(self) -> tuple[int, ...]:
        """Per device, the bytes of its shard's tensors, from the layout (no file is read)."""
        itemsize = {t.name: t.torch_dtype.itemsize for t in self.layout.tensors}
        return tuple(
            sum(
                math.prod(shape) * itemsize[name]
                for name, shape in expected_shapes(self.layout, self.partition, rank).items()
            )
            for rank in range(self.num_devices)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "model": self.model,
            "weights": self.weights.to_dict(),
            "num_devices": self.num_devices,
            "thresholds": list(self.thresholds),
            "origin": self.origin.to_dict(),
            "created_utc": self.created_utc,
            "packages": dict(self.packages),
            "expected": None if self.expected is None else self.expected.to_dict(),
            "partition": self.partition.to_dict(),
            "layout": self.layout.to_dict(),
            "files": dict(self.files),
        }

    def to_json(self) -> str:
        return pretty_json(self.to_dict()) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse and check; `CorruptFileError` names the field at fault."""
        _check_format(data)
        partition = _partition(data)
        if get_int(data, "num_devices") != partition.num_devices:
            raise CorruptFileError(
                f"field `num_devices` ({data['num_devices']}) disagrees with the partition's "
                f"{partition.num_devices} devices."
            )
        expected = data.get("expected")
        return cls(
            model=get_str(data, "model"),
            weights=WeightsInfo.from_dict(get_mapping(data, "weights"), "weights"),
            partition=partition,
            layout=TensorLayout.from_dict(get_mapping(data, "layout"), "layout"),
            origin=Origin.from_dict(get_mapping(data, "origin"), "origin"),
            created_utc=get_str(data, "created_utc"),
            packages=tuple((str(k), str(v)) for k, v in get_mapping(data, "packages").items()),
            files=tuple(sorted((str(k), str(v)) for k, v in get_mapping(data, "files").items())),
            expected=None if expected is None else ExpectedMetrics.from_dict(expected, "expected"),
            format_version=get_int(data, "format_version"),
        )


def pretty_json(value: Any, level: int = 0) -> str:
    """JSON for people: an object or list on one line when it fits in 120 characters or is a
    flat list of numbers (one device's neuron indices), else one entry per line."""
    compact = json.dumps(value, separators=(", ", ": "))
    if not isinstance(value, (dict, list)) or len(compact) <= 120 or _numeric(value):
        return compact
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {pretty_json(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{pretty_json(v, level + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def _numeric(value: Any) -> bool:
    """A flat list of numbers (one device's neuron indices)."""
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def _check_format(data: Mapping[str, Any]) -> None:
    if not isinstance(data, Mapping) or data.get("format") != BUNDLE_FORMAT:
        raise CorruptFileError(f"field `format` must be {BUNDLE_FORMAT!r}: not a bundle manifest.")
    version = get_int(data, "format_version")
    if version > BUNDLE_VERSION:
        raise CorruptFileError(
            f"field `format_version`: bundle format version {version} is newer than this "
            f"package reads ({BUNDLE_VERSION}); upgrade robustdice-dse here, or deploy again "
            "with this version."
        )
    if version < 1:
        raise CorruptFileError(f"field `format_version` must be at least 1, got {version}.")


def _partition(data: Mapping[str, Any]) -> Partition:
    raw = dict(get_mapping(data, "partition"))
    try:
        partition = Partition.from_dict(raw)
    except CorruptFileError as err:
        raise CorruptFileError(f"field `partition`: {err}") from err
    thresholds = get_list(data, "thresholds")
    if [float(t) for t in thresholds] != list(partition.thresholds):
        raise CorruptFileError("field `thresholds` disagrees with the partition's thresholds.")
    return partition


def _check_relative(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
        raise CorruptFileError(f"field `files`: {path!r} is not a path inside the bundle.")


def read_json(path: Path) -> Mapping[str, Any]:
    """A JSON object from ``path``; errors name the file."""
    try:
        text = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingResourceError(f"`{path}` is missing; is this a bundle folder?") from err
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"`{path}` is not valid JSON ({err}).") from err
    if not isinstance(data, dict):
        raise CorruptFileError(f"`{path}` must hold a JSON object.")
    return data


def read_manifest(directory: Path | str) -> Manifest:
    """The manifest of the bundle in ``directory``; `CorruptFileError` names the file and
    the field (an unknown or newer format version included)."""
    path = Path(directory) / MANIFEST_NAME
    if not Path(directory).is_dir():
        raise MissingResourceError(f"bundle folder `{directory}` does not exist.")
    data = read_json(path)
    try:
        return Manifest.from_dict(data)
    except (CorruptFileError, InvalidParameterError) as err:
        raise CorruptFileError(f"`{path}`: {err}") from err
