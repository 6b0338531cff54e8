"""Reading a bundle back: one node's shard (what a board loads), or the whole state dict."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from robustdice_core._errors import CorruptFileError, MissingResourceError
from robustdice_core.bundle._manifest import MANIFEST_NAME, Manifest, read_json, read_manifest
from robustdice_core.bundle._runtime_config import RuntimeConfig
from robustdice_core.bundle._shards import assemble_state, expected_shapes
from robustdice_core.bundle._write import RUNTIME_NAME, SHARD_NAME, device_dir, shard_metadata

__all__ = [
    "check_fits",
    "check_shard_identity",
    "load_shard",
    "read_file",
    "read_runtime",
    "reassemble",
    "shard_path",
]


def shard_path(rank: int) -> str:
    """Node ``rank``'s shard, relative to the bundle."""
    return f"{device_dir(rank)}/{SHARD_NAME}"


def read_file(directory: Path, relative: str, manifest: Manifest) -> bytes:
    """A bundle file's bytes, checked against the manifest's sha256."""
    path = directory / relative
    listed = manifest.file_hashes.get(relative)
    if listed is None:
        raise CorruptFileError(f"`{directory / MANIFEST_NAME}`: field `files` lacks `{relative}`.")
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingResourceError(
            f"`{path}` is missing (listed in {MANIFEST_NAME}); copy the whole bundle folder."
        ) from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != listed:
        raise CorruptFileError(
            f"`{path}`: sha256 {digest[:12]}... does not match {MANIFEST_NAME} "
            f"({listed[:12]}...); the file is damaged or was changed after deployment."
        )
    return data


def check_shard_identity(directory: Path, rank: int, manifest: Manifest) -> None:
    """The shard's header names the manifest's model, weights and node (a manifest copied
    from another bundle is caught here, before any hash)."""
    path = directory / shard_path(rank)
    if not path.is_file():
        raise MissingResourceError(
            f"`{path}` is missing (listed in {MANIFEST_NAME}); copy the whole bundle folder."
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = dict(handle.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CorruptFileError(f"`{path}` is not a readable safetensors file ({err}).") from err
    wanted = shard_metadata(manifest.model, manifest.weights.sha256, rank, manifest.num_devices)
    if found.get("format") != wanted["format"]:
        raise CorruptFileError(f"`{path}` is not a bundle shard (no bundle header metadata).")
    if (found.get("model"), found.get("weights_sha256")) != (
        wanted["model"],
        wanted["weights_sha256"],
    ):
        raise CorruptFileError(
            f"`{path}` belongs to model `{found.get('model')}` (weights "
            f"{str(found.get('weights_sha256'))[:12]}...) but {MANIFEST_NAME} names "
            f"`{manifest.model}` (weights {manifest.weights.sha256[:12]}...): the manifest "
            "comes from another bundle."
        )
    if (found.get("rank"), found.get("num_devices")) != (wanted["rank"], wanted["num_devices"]):
        raise CorruptFileError(
            f"`{path}` is the shard of node {found.get('rank')} of {found.get('num_devices')}, "
            f"not of node {rank} of {manifest.num_devices}: shards were moved between folders."
        )


def load_shard(
    directory: Path | str, rank: int, *, manifest: Manifest | None = None
) -> dict[str, Tensor]:
    """Node ``rank``'s tensors by their state-dict names: hash, header and shapes checked.

    Only safetensors reads the file (no pickle). Per-neuron tensors hold the rows of
    ``manifest.partition.assignments[unit][rank]``, in that order (CDC parity: the summed rows).
    """
    root = Path(directory)
    manifest = manifest or read_manifest(root)
    if not 0 <= rank < manifest.num_devices:
        raise MissingResourceError(
            f"the bundle has nodes 0..{manifest.num_devices - 1}, not {rank}."
        )
    check_shard_identity(root, rank, manifest)
    data = read_file(root, shard_path(rank), manifest)
    try:
        tensors = load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types
        raise CorruptFileError(f"`{root / shard_path(rank)}` cannot be read ({err}).") from err
    _check_shapes(root / shard_path(rank), tensors, manifest, rank)
    return tensors


def _check_shapes(path: Path, tensors: dict[str, Tensor], manifest: Manifest, rank: int) -> None:
    shapes = expected_shapes(manifest.layout, manifest.partition, rank)
    missing = sorted(set(shapes) - set(tensors))
    extra = sorted(set(tensors) - set(shapes))
    if missing or extra:
        what = f"lacks `{missing[0]}`" if missing else f"has unexpected `{extra[0]}`"
        raise CorruptFileError(f"`{path}` {what} for node {rank} of this partition.")
    dtypes = {t.name: t.torch_dtype for t in manifest.layout.tensors}
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape or tensor.dtype != dtypes[name]:
            raise CorruptFileError(
                f"`{path}`: tensor `{name}` is {tensor.dtype} {tuple(tensor.shape)}, the "
                f"partition needs {dtypes[name]} {shape}."
            )


def reassemble(directory: Path | str, module: nn.Module | None = None) -> dict[str, Tensor]:
    """The whole model's state dict from every node's shard (replicas must agree).

    With ``module``, the result is also checked to fit it (same names and shapes).
    """
    root = Path(directory)
    manifest = read_manifest(root)
    shards = [load_shard(root, r, manifest=manifest) for r in range(manifest.num_devices)]
    labels = [str(root / shard_path(r)) for r in range(manifest.num_devices)]
    state = assemble_state(manifest.layout, manifest.partition, shards, labels)
    if module is not None:
        check_fits(state, module, root / MANIFEST_NAME, manifest.model)
    return state


def check_fits(state: dict[str, Tensor], module: nn.Module, source: Path, model: str) -> None:
    """``state`` has exactly ``module``'s state-dict names and shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or wrong:
        first = (
            f"missing `{missing[0]}`"
            if missing
            else f"unexpected `{extra[0]}`"
            if extra
            else f"`{wrong[0]}` has another shape"
        )
        raise CorruptFileError(
            f"`{source}`: the bundle's tensors do not fit model `{model}` ({first})."
        )


def read_runtime(directory: Path | str) -> RuntimeConfig:
    """The mesh of the bundle in ``directory`` (``runtime.json``); errors name the file."""
    path = Path(directory) / RUNTIME_NAME
    data = read_json(path)
    try:
        return RuntimeConfig.from_dict(data)
    except CorruptFileError as err:
        raise CorruptFileError(f"`{path}`: {err}") from err
