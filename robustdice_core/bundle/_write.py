"""`write_bundle`: a partition of a loaded model as a deployable folder (docs/bundle.md).

Every file is written atomically (`atomic_write_bytes`) into a fresh temporary folder next to
the target, which is renamed into place at the end: a bundle folder is never half-written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from safetensors.torch import save as save_safetensors
from torch import Tensor

from robustdice_core._cache import atomic_write_bytes
from robustdice_core._errors import InvalidParameterError
from robustdice_core.bundle._layout import TensorLayout, plan_layout
from robustdice_core.bundle._manifest import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST_NAME,
    ExpectedMetrics,
    Manifest,
    Origin,
    WeightsInfo,
    pretty_json,
)
from robustdice_core.bundle._runtime_config import (
    DEFAULT_BASE_PORT,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_TIMEOUT_S,
    NodeConfig,
    NodeKeys,
    RuntimeConfig,
)
from robustdice_core.bundle._shards import split_state
from robustdice_core.partition import Partition
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LoadedModel

__all__ = [
    "CLIENT_SECRET_NAME",
    "NODE_NAME",
    "RUNTIME_NAME",
    "SECRET_NAME",
    "SHARD_NAME",
    "check_out_dir",
    "device_dir",
    "shard_metadata",
    "write_bundle",
]

RUNTIME_NAME = "runtime.json"
SHARD_NAME = "weights.safetensors"
NODE_NAME = "node.json"
SECRET_NAME = "secret.key"
CLIENT_SECRET_NAME = "client.key"  # at the bundle root: the client's (`dse run`) secret key
PACKAGES = ("torch", "torchvision", "safetensors", "robustdice-dse")


def device_dir(rank: int) -> str:
    """The folder of node ``rank``, relative to the bundle: ``device-R``."""
    return f"device-{rank}"


def shard_metadata(model: str, weights_sha256: str, rank: int, num_devices: int) -> dict[str, str]:
    """The safetensors header metadata of a shard: which bundle and node it belongs to."""
    return {
        "format": BUNDLE_FORMAT,
        "format_version": str(BUNDLE_VERSION),
        "model": model,
        "weights_sha256": weights_sha256,
        "rank": str(rank),
        "num_devices": str(num_devices),
    }


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder without ``force``. Even with
    ``force``, only an earlier bundle (a folder with a manifest) is ever replaced."""
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"`--out` `{out}` is a file; name a folder for the bundle.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise InvalidParameterError(
            f"`--out` `{out}` is not empty; pass `--force` to replace the bundle in it, or "
            "choose a new folder."
        )
    if not (out / MANIFEST_NAME).is_file():
        raise InvalidParameterError(
            f"`--out` `{out}` is not empty and holds no bundle ({MANIFEST_NAME}); `--force` "
            "only replaces an earlier bundle: choose an empty or new folder."
        )


def write_bundle(
    out: Path | str,
    model: LoadedModel,
    partition: Partition,
    *,
    keys: Sequence[NodeKeys],
    client_key: NodeKeys | None = None,
    expected: ExpectedMetrics | None = None,
    origin: Origin | None = None,
    traced: TracedModel | None = None,
    local: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    base_port: int = DEFAULT_BASE_PORT,
    force: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> Manifest:
    """Write ``partition`` of ``model`` as a bundle folder ``out`` and return its manifest.

    Args:
        out: the bundle folder; must be new or empty, or (``force``) an earlier bundle.
        model: the loaded model whose weights are cut into shards.
        partition: which neurons each device computes (a `Partition` of this model).
        keys: one CURVE key pair per device (`runtime.curve_keypairs`).
        client_key: the client's key pair (the process that streams images, `dse run`);
            without one the bundle cannot be run by `dse run`.
        expected: the figures the deployment should reach (cost model, simulated accuracy).
        origin: the study / trial / method the partition came from.
        traced: the model's trace, if already at hand (otherwise traced here).
        local: loopback addresses with distinct ports, for `dse run --local`.
        timeout_s: a peer silent for this long is declared down.
        heartbeat_s: how often every node sends a heartbeat.
        base_port: the first data port (heartbeat: the next one).
        force: replace an earlier bundle in ``out``.
        clock: the creation time's source (UTC); `datetime.now` if None.
    """
    target = Path(out)
    check_out_dir(target, force)
    if len(keys) != partition.num_devices:
        raise InvalidParameterError(
            f"`keys` has {len(keys)} key pairs for {partition.num_devices} devices; give one "
            "per device."
        )
    runtime = RuntimeConfig.create(
        [k.public for k in keys],
        local=local,
        base_port=base_port,
        timeout_s=timeout_s,
        heartbeat_s=heartbeat_s,
        client_key=None if client_key is None else client_key.public,
    )
    traced = traced or trace_model(model.module, model.spec.input_shape, name=model.spec.name)
    state = model.module.state_dict()
    layout = plan_layout(traced, state)
    weights = WeightsInfo(model.weights_hash(), model.weights_source, model.has_weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(target)
    try:
        files = _write_nodes(staging, model.spec.name, weights, layout, partition, state, keys)
        files[RUNTIME_NAME] = _write(staging / RUNTIME_NAME, _json(runtime.to_dict()))
        if client_key is not None:
            files[CLIENT_SECRET_NAME] = _write_secret(
                staging / CLIENT_SECRET_NAME, f"{client_key.secret}\n".encode()
            )
        for rank in range(partition.num_devices):
            node = NodeConfig(rank, runtime, SHARD_NAME, SECRET_NAME)
            path = f"{device_dir(rank)}/{NODE_NAME}"
            files[path] = _write(staging / path, _json(node.to_dict()))
        manifest = Manifest(
            model=model.spec.name,
            weights=weights,
            partition=partition,
            layout=layout,
            origin=origin or Origin(method=partition.method),
            created_utc=(clock or _utc_now)().astimezone(timezone.utc).isoformat(),
            packages=tuple((name, _version(name)) for name in PACKAGES),
            files=tuple(sorted(files.items())),
            expected=expected,
        )
        atomic_write_bytes(staging / MANIFEST_NAME, manifest.to_json().encode())
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_nodes(
    root: Path,
    model: str,
    weights: WeightsInfo,
    layout: TensorLayout,
    partition: Partition,
    state: dict[str, Tensor],
    keys: Sequence[NodeKeys],
) -> dict[str, str]:
    """Every node's shard and secret key; returns relative path -> sha256."""
    files: dict[str, str] = {}
    shards = split_state(state, layout, partition)
    for rank, (shard, pair) in enumerate(zip(shards, keys, strict=True)):
        folder = root / device_dir(rank)
        folder.mkdir(mode=0o700)  # holds the node's secret key
        meta = shard_metadata(model, weights.sha256, rank, partition.num_devices)
        files[f"{device_dir(rank)}/{SHARD_NAME}"] = _write(
            folder / SHARD_NAME, save_safetensors(shard, metadata=meta)
        )
        files[f"{device_dir(rank)}/{SECRET_NAME}"] = _write_secret(
            folder / SECRET_NAME, f"{pair.secret}\n".encode()
        )
    return files


def _write(path: Path, data: bytes) -> str:
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _write_secret(path: Path, data: bytes) -> str:
    """Created 0600 before a byte is written; `atomic_write_bytes` keeps that mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)
    return _write(path, data)


def _json(data: object) -> bytes:
    return (pretty_json(data) + "\n").encode()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _staging_dir(target: Path) -> Path:
    """A new empty folder beside ``target`` (same file system: the final rename is atomic)."""
    for _ in range(100):
        staging = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary folder name next to `{target}`.")


def _install(staging: Path, target: Path) -> None:
    """Rename the finished bundle into place; an earlier bundle is moved aside, then removed."""
    if target.is_dir() and any(target.iterdir()):
        old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    if target.is_dir():
        target.rmdir()
    os.rename(staging, target)
