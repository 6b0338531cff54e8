"""`verify_bundle`: integrity, loadability, key hygiene and equivalence with the model.

Checks, cheapest first; the first problem raises a project error naming the file:

1. the manifest parses and its format version is one this package reads;
2. every node's shard header names the manifest's model, weights and node;
3. every file listed in the manifest exists and has its sha256;
4. the runtime configuration parses, lists one node per device, and each node folder holds
   only its own secret key (mode 0600); no other file contains any secret key;
5. every shard loads with safetensors alone and has the tensors its neurons need;
6. the shards reassemble (replicas and shared copies agree; CDC parity is the sum of the data
   slices) into a state dict whose hash is the manifest's weights sha256;
7. the architecture rebuilt from the registry, with the reassembled weights, gives the same
   logits as the model loaded the normal way (trained weights only; random architecture-only
   weights are checked by their hash alone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from robustdice_core._cache import hash_tensors
from robustdice_core._errors import CorruptFileError, InvalidParameterError
from robustdice_core.bundle._manifest import MANIFEST_NAME, Manifest, read_json, read_manifest
from robustdice_core.bundle._read import (
    check_fits,
    check_shard_identity,
    load_shard,
    read_file,
    read_runtime,
    shard_path,
)
from robustdice_core.bundle._runtime_config import NodeConfig, check_z85_key
from robustdice_core.bundle._shards import assemble_state, check_parity, shard_bytes
from robustdice_core.bundle._write import (
    CLIENT_SECRET_NAME,
    NODE_NAME,
    RUNTIME_NAME,
    SECRET_NAME,
    SHARD_NAME,
    device_dir,
)
from robustdice_core.zoo import MODELS, load_model

__all__ = ["VerifyReport", "verify_bundle"]

T = TypeVar("T")
LOGIT_RTOL = 1e-4
LOGIT_ATOL = 1e-5


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_bundle` checked and found."""

    directory: str
    model: str
    num_devices: int
    files_checked: int  # files whose sha256 matched the manifest
    bundle_bytes: int  # every file of the bundle
    shard_bytes: tuple[int, ...]  # tensor bytes per device
    reference: str  # what the reassembled weights were compared with
    max_abs_logit_diff: float | None  # None: random weights, compared by hash only
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shard_bytes"] = list(self.shard_bytes)
        return data


def verify_bundle(
    directory: Path | str,
    module: nn.Module | None = None,
    *,
    inputs: int = 4,
    seed: int = 0,
) -> VerifyReport:
    """Check the bundle in ``directory`` (see the module docstring) and report.

    Args:
        directory: the bundle folder.
        module: the original model to compare logits with; if None it is loaded by name the
            normal way (`load_model`, with the manifest's weights file for ``file:`` sources).
        inputs: random inputs the logits are compared on.
        seed: the seed of those inputs.

    Raises:
        CorruptFileError: a damaged, missing, foreign or inconsistent file (named).
        MissingResourceError: a file listed in the manifest is missing.
    """
    start = time.perf_counter()
    root = Path(directory)
    manifest = read_manifest(root)
    for rank in range(manifest.num_devices):
        check_shard_identity(root, rank, manifest)
    _check_listed(root, manifest)
    for relative, _ in manifest.files:
        if not relative.endswith(SHARD_NAME):  # shards are hashed as they are loaded
            read_file(root, relative, manifest)
    _check_runtime(root, manifest)
    _check_secrets(root, manifest)
    shards = [load_shard(root, r, manifest=manifest) for r in range(manifest.num_devices)]
    state = _reassembled(root, manifest, shards)
    reference, diff = _compare_model(root, manifest, state, module, inputs, seed)
    return VerifyReport(
        directory=str(root),
        model=manifest.model,
        num_devices=manifest.num_devices,
        files_checked=len(manifest.files),
        bundle_bytes=sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        shard_bytes=tuple(shard_bytes(s) for s in shards),
        reference=reference,
        max_abs_logit_diff=diff,
        seconds=time.perf_counter() - start,
    )


def _required_files(manifest: Manifest) -> list[str]:
    names = [RUNTIME_NAME]
    for rank in range(manifest.num_devices):
        names += [f"{device_dir(rank)}/{n}" for n in (SHARD_NAME, NODE_NAME, SECRET_NAME)]
    return names


def _check_listed(root: Path, manifest: Manifest) -> None:
    listed = manifest.file_hashes
    for name in _required_files(manifest):
        if name not in listed:
            raise CorruptFileError(f"`{root / MANIFEST_NAME}`: field `files` lacks `{name}`.")


def _check_runtime(root: Path, manifest: Manifest) -> None:
    """runtime.json and every node.json parse and describe the same mesh of N nodes."""
    runtime = read_runtime(root)
    if len(runtime.nodes) != manifest.num_devices:
        raise CorruptFileError(
            f"`{root / RUNTIME_NAME}`: {len(runtime.nodes)} nodes for a partition over "
            f"{manifest.num_devices} devices."
        )
    for rank in range(manifest.num_devices):
        path = root / device_dir(rank) / NODE_NAME
        node = _parsed(path, NodeConfig.from_dict)
        if node.rank != rank or node.runtime != runtime:
            raise CorruptFileError(
                f"`{path}`: field `rank` or `runtime` disagrees with `{RUNTIME_NAME}` and the "
                f"folder (node {rank})."
            )


def _parsed(path: Path, parse: Callable[[Mapping[str, Any]], T]) -> T:
    try:
        return parse(read_json(path))
    except (CorruptFileError, InvalidParameterError) as err:
        if str(path) in str(err):
            raise
        raise CorruptFileError(f"`{path}`: {err}") from err


def _check_secrets(root: Path, manifest: Manifest) -> None:
    """Each secret key lives in its own file only (a node's in its folder, the client's at
    the root), readable by its owner only."""
    keys: dict[Path, str] = {}
    paths = [root / device_dir(rank) / SECRET_NAME for rank in range(manifest.num_devices)]
    if CLIENT_SECRET_NAME in manifest.file_hashes:
        paths.append(root / CLIENT_SECRET_NAME)
    for path in paths:
        try:
            keys[path] = check_z85_key(path.read_text().strip(), "a secret key")
        except (InvalidParameterError, UnicodeDecodeError) as err:
            raise CorruptFileError(f"`{path}`: {err}") from err
        mode = path.stat().st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            raise CorruptFileError(
                f"`{path}` is readable by other users (mode {mode:o}); `chmod 600` it."
            )
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name == SHARD_NAME:
            continue
        content = path.read_bytes()
        for owner, secret in keys.items():
            if owner != path and secret.encode() in content:
                raise CorruptFileError(
                    f"`{path}` contains the secret key of `{owner.relative_to(root)}`; a "
                    "secret key belongs only in its own key file: deploy again."
                )


def _reassembled(
    root: Path, manifest: Manifest, shards: list[dict[str, Tensor]]
) -> dict[str, Tensor]:
    labels = [str(root / shard_path(r)) for r in range(manifest.num_devices)]
    state = assemble_state(manifest.layout, manifest.partition, shards, labels)
    parity = manifest.partition.parity_device
    if parity is not None:
        check_parity(manifest.layout, manifest.partition, state, shards[parity], labels[parity])
    digest = hash_tensors(state)
    if digest != manifest.weights.sha256:
        raise CorruptFileError(
            f"`{root / MANIFEST_NAME}`: the shards reassemble into weights with sha256 "
            f"{digest[:12]}..., not the field `weights.sha256` {manifest.weights.sha256[:12]}..."
        )
    return state


def _compare_model(
    root: Path,
    manifest: Manifest,
    state: dict[str, Tensor],
    module: nn.Module | None,
    inputs: int,
    seed: int,
) -> tuple[str, float | None]:
    """Rebuild the architecture, load the reassembled weights, compare logits."""
    spec = MODELS.get(manifest.model)
    rebuilt = spec.build().eval()
    check_fits(state, rebuilt, root / MANIFEST_NAME, manifest.model)
    rebuilt.load_state_dict(state, strict=True)
    reference, label = _reference(root, manifest, module)
    if reference is None:
        return label, None
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((inputs, *spec.input_shape), generator=generator)
    with torch.no_grad():
        ours, theirs = rebuilt(x), reference.eval()(x)
    diff = float((ours - theirs).abs().max())
    if not torch.allclose(ours, theirs, rtol=LOGIT_RTOL, atol=LOGIT_ATOL):
        raise CorruptFileError(
            f"`{root}`: the reassembled model's logits differ from `{label}`'s by up to "
            f"{diff:.3g}."
        )
    return label, diff


def _reference(
    root: Path, manifest: Manifest, module: nn.Module | None
) -> tuple[nn.Module | None, str]:
    """The model to compare with, and a label saying what it is."""
    if module is not None:
        return module, "the given model"
    if not manifest.weights.trained:
        return None, "the manifest's weights sha256 (random architecture-only weights)"
    source = manifest.weights.source
    weights = Path(source.removeprefix("file:")) if source.startswith("file:") else None
    loaded = load_model(manifest.model, weights=weights)
    if loaded.weights_hash() != manifest.weights.sha256:
        raise CorruptFileError(
            f"`{root / MANIFEST_NAME}`: field `weights.sha256` {manifest.weights.sha256[:12]}... "
            f"is not `{manifest.model}` as loaded here ({loaded.weights_source}: "
            f"{loaded.weights_hash()[:12]}...); the bundle was made from other weights."
        )
    return loaded.module, f"{manifest.model} ({loaded.weights_source})"
