"""Bundles: shards hold exactly what the cost model charges, reassemble into the model, and
every kind of damage is named (robustdice_core.bundle, docs/bundle.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from robustdice_core import CDC, LOP, CorruptFileError, FullReplication, Partition, RobustDiCE
from robustdice_core._cache import hash_tensors
from robustdice_core._errors import InvalidParameterError, MissingResourceError
from robustdice_core.bundle import (
    MANIFEST_NAME,
    RUNTIME_NAME,
    SECRET_NAME,
    Manifest,
    NodeKeys,
    RuntimeConfig,
    TensorRole,
    device_dir,
    load_shard,
    plan_layout,
    read_manifest,
    read_runtime,
    reassemble,
    shard_bytes,
    verify_bundle,
    write_bundle,
)
from robustdice_core.costs import (
    ModelCostInfo,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import MODELS, LoadedModel
from runtime import curve_keypairs, curve_public_key

pytestmark = pytest.mark.usefixtures("single_torch_thread")

DIGITS_MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
ND = 4
METHODS = ("robustdice", "lop", "cdc", "replication")


def _robustdice(sizes: list[int]) -> Partition:
    """Seeded random importance points; thresholds that replicate some clusters, not all."""
    rng = np.random.default_rng(0)
    points = [rng.random((size, 3)) for size in sizes]
    thresholds = [0.2 + 0.1 * (i % 4) for i in range(len(sizes))]
    return RobustDiCE(points).partition_for(thresholds, ND)


PARTITIONS: dict[str, Callable[[list[int]], Partition]] = {
    "robustdice": _robustdice,
    "lop": lambda sizes: LOP().partition(sizes, ND),
    "cdc": lambda sizes: CDC().partition(sizes, ND),
    "replication": lambda sizes: FullReplication().partition(sizes, ND),
}


@pytest.fixture(scope="module")
def traced(digits_model: Callable[[str], LoadedModel]) -> Callable[[str], TracedModel]:
    cache: dict[str, TracedModel] = {}

    def get(name: str) -> TracedModel:
        if name not in cache:
            model = digits_model(name)
            cache[name] = trace_model(model.module, model.spec.input_shape)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def bundle(
    tmp_path_factory: pytest.TempPathFactory,
    digits_model: Callable[[str], LoadedModel],
    traced: Callable[[str], TracedModel],
) -> Callable[[str, str], tuple[Path, Partition]]:
    """``bundle(model, method)``: a bundle folder written once per module, and its partition."""
    made: dict[tuple[str, str], tuple[Path, Partition]] = {}

    def get(model: str, method: str) -> tuple[Path, Partition]:
        if (model, method) not in made:
            trace = traced(model)
            partition = PARTITIONS[method]([u.num_neurons for u in trace.units])
            out = tmp_path_factory.mktemp("bundles") / f"{model}-{method}"
            write_bundle(
                out, digits_model(model), partition, keys=curve_keypairs(ND), traced=trace
            )
            made[model, method] = (out, partition)
        return made[model, method]

    return get


def copy_bundle(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(source, target)
    return target


def rewrite_manifest(directory: Path, **changes: object) -> None:
    manifest = read_manifest(directory)
    updated = dataclasses.replace(manifest, **changes)  # type: ignore[arg-type]
    (directory / MANIFEST_NAME).write_text(updated.to_json())


# ----------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", DIGITS_MODELS)
def test_shard_bytes_equal_the_cost_models_weight_bytes(
    bundle: Callable[[str, str], tuple[Path, Partition]],
    traced: Callable[[str], TracedModel],
    model: str,
    method: str,
) -> None:
    out, partition = bundle(model, method)
    costs = estimate_costs(
        partition,
        ModelCostInfo.from_traced(traced(model)),
        load_device_profile("jetson_xavier_nx_15w"),
        load_link_profile("gigabit_ethernet"),
        dtype="fp32",
    )
    on_disk = [shard_bytes(load_shard(out, rank)) for rank in range(ND)]
    assert on_disk == [d.weight_bytes for d in costs.per_device]
    assert list(read_manifest(out).shard_bytes()) == on_disk


def test_the_partitions_exercise_replication_and_parity(
    bundle: Callable[[str, str], tuple[Path, Partition]],
) -> None:
    """The ground-truth cases are not all trivial: RobustDiCE replicates some neurons only."""
    _, robust = bundle("digits-vgg-bn", "robustdice")
    assert 1.0 < robust.replication_factor < ND
    _, cdc = bundle("digits-vgg-bn", "cdc")
    assert cdc.parity_device == ND - 1


# ----------------------------------------------------------------------------- reassembly
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", DIGITS_MODELS)
def test_reassembled_weights_give_the_original_logits(
    bundle: Callable[[str, str], tuple[Path, Partition]],
    digits_model: Callable[[str], LoadedModel],
    model: str,
    method: str,
) -> None:
    out, _ = bundle(model, method)
    original = digits_model(model)
    rebuilt = MODELS.get(model).build().eval()
    state = reassemble(out, rebuilt)
    assert hash_tensors(state) == original.weights_hash()
    rebuilt.load_state_dict(state, strict=True)
    x = torch.randn((8, *original.spec.input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original.module(x))


def test_replicas_reassemble_to_the_same_weights_and_must_agree(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    source, partition = bundle("digits-vgg-bn", "replication")
    assert reassemble(source).keys() == reassemble(bundle("digits-vgg-bn", "lop")[0]).keys()
    out = copy_bundle(source, tmp_path)
    tensors = load_shard(out, 2)
    tensors["features.0.weight"][5] += 1.0  # one replica of neuron 5 differs
    _replace_shard(out, 2, tensors)
    with pytest.raises(CorruptFileError, match="replica of neuron 5 in `features.0.weight`"):
        reassemble(out)


def _replace_shard(out: Path, rank: int, tensors: dict[str, torch.Tensor]) -> None:
    """Rewrite a shard with the same header and record its new hash (a consistent forgery)."""
    path = out / device_dir(rank) / "weights.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    data = save_safetensors(tensors, metadata=metadata)
    path.write_bytes(data)
    manifest = read_manifest(out)
    files = dict(manifest.files)
    files[f"{device_dir(rank)}/weights.safetensors"] = hashlib.sha256(data).hexdigest()
    rewrite_manifest(out, files=tuple(sorted(files.items())))


def test_cdc_parity_shard_holds_summed_layer_rows_and_every_local_parameter(
    bundle: Callable[[str, str], tuple[Path, Partition]],
    digits_model: Callable[[str], LoadedModel],
) -> None:
    out, partition = bundle("digits-vgg-bn", "cdc")
    state = digits_model("digits-vgg-bn").module.state_dict()
    parity = load_shard(out, ND - 1)
    slices = partition.assignments[0][: ND - 1]
    expected = torch.zeros_like(parity["features.0.weight"])
    for neurons in slices:
        expected[: len(neurons)] += state["features.0.weight"][list(neurons)]
    assert parity["features.0.weight"].shape[0] == max(len(n) for n in slices)
    assert torch.equal(parity["features.0.weight"], expected)
    # BatchNorm of every slice: the parity device decodes a lost slice, local ops included
    assert torch.equal(parity["features.1.running_mean"], state["features.1.running_mean"])
    assert load_shard(out, 0)["features.1.running_mean"].shape[0] == len(slices[0])


def test_layout_roles_of_convnext(traced: Callable[[str], TracedModel]) -> None:
    trace = traced("digits-convnext")
    layout = plan_layout(trace, trace.graph_module.state_dict())
    roles = {t.name: (t.role, t.unit, t.dim) for t in layout.tensors}
    unit = next(u.index for u in trace.units if u.name == "features.1.0.block.5")
    assert roles["features.1.0.layer_scale"] == (TensorRole.LOCAL, unit, 0)
    assert roles["features.1.0.block.5.weight"] == (TensorRole.LAYER, unit, 0)
    assert roles["features.1.0.block.2.weight"][0] is TensorRole.SHARED  # a LayerNorm
    assert roles["features.0.1.weight"][0] is TensorRole.SHARED  # LayerNorm2d, traced through


# ----------------------------------------------------------------------------- verify
def test_verify_reports_an_intact_bundle(
    bundle: Callable[[str, str], tuple[Path, Partition]],
) -> None:
    out, _ = bundle("digits-vgg-bn", "cdc")
    report = verify_bundle(out)
    assert report.max_abs_logit_diff == 0.0
    assert report.files_checked == 1 + 3 * ND  # runtime.json, per node 3 files
    assert "trained" in report.reference


def test_a_flipped_byte_in_a_shard_is_named(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    out = copy_bundle(bundle("digits-vgg-bn", "lop")[0], tmp_path)
    shard = out / "device-1" / "weights.safetensors"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"device-1/weights.safetensors`: sha256"):
        verify_bundle(out)


def test_a_missing_shard_is_named(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    out = copy_bundle(bundle("digits-vgg-bn", "lop")[0], tmp_path)
    (out / "device-2" / "weights.safetensors").unlink()
    with pytest.raises(MissingResourceError, match=r"device-2/weights.safetensors` is missing"):
        verify_bundle(out)


def test_a_manifest_from_another_model_is_named(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    out = copy_bundle(bundle("digits-vgg-bn", "lop")[0], tmp_path)
    shutil.copy(bundle("digits-alexnet", "lop")[0] / MANIFEST_NAME, out / MANIFEST_NAME)
    with pytest.raises(CorruptFileError, match="comes from another bundle") as error:
        verify_bundle(out)
    assert "digits-vgg-bn" in str(error.value) and "digits-alexnet" in str(error.value)


def test_a_bundle_from_the_future_is_refused(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    out = copy_bundle(bundle("digits-vgg-bn", "lop")[0], tmp_path)
    data = json.loads((out / MANIFEST_NAME).read_text())
    data["format_version"] = 99
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(CorruptFileError, match="version 99 is newer than this package reads"):
        verify_bundle(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(num_devices="four"), "field `num_devices` must be an integer"),
        (lambda d: d["weights"].pop("sha256"), "field `weights.sha256` is missing"),
        (lambda d: d["layout"]["tensors"][0].update(role="odd"), r"layout.tensors\[0\].role"),
        (lambda d: d.update(format="zip"), "not a bundle manifest"),
        (lambda d: d["partition"]["assignments"][0][0].clear(), "field `partition`"),
        (lambda d: d["files"].update({"../x": "0" * 64}), "not a path inside the bundle"),
    ],
)
def test_manifest_damage_names_file_and_field(
    bundle: Callable[[str, str], tuple[Path, Partition]],
    tmp_path: Path,
    edit: Callable[[dict], object],
    message: str,
) -> None:
    out = copy_bundle(bundle("digits-alexnet", "lop")[0], tmp_path)
    data = json.loads((out / MANIFEST_NAME).read_text())
    edit(data)
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(CorruptFileError, match=message) as error:
        read_manifest(out)
    assert MANIFEST_NAME in str(error.value) and "\n" not in str(error.value)


def test_manifest_round_trips(bundle: Callable[[str, str], tuple[Path, Partition]]) -> None:
    manifest = read_manifest(bundle("digits-convnext", "robustdice")[0])
    again = Manifest.from_dict(json.loads(manifest.to_json()))
    assert again == manifest
    assert again.partition.replication_factor == manifest.partition.replication_factor


# ----------------------------------------------------------------------------- keys
def test_each_secret_key_lives_only_in_its_own_folder(
    bundle: Callable[[str, str], tuple[Path, Partition]],
) -> None:
    out, _ = bundle("digits-vgg-bn", "robustdice")
    runtime = read_runtime(out)
    secrets = {}
    for node in runtime.nodes:
        path = out / device_dir(node.rank) / SECRET_NAME
        assert path.stat().st_mode & 0o777 == 0o600
        secrets[node.rank] = path.read_text().strip()
        assert curve_public_key(secrets[node.rank]) == node.public_key
    for path in (p for p in out.rglob("*") if p.is_file()):
        content = path.read_bytes()
        holders = [r for r, s in secrets.items() if s.encode() in content]
        owner = [int(path.parent.name.split("-")[1])] if path.name == SECRET_NAME else []
        assert holders == owner, path
    assert len(set(secrets.values())) == ND


def test_a_secret_key_in_another_folder_or_readable_by_others_is_refused(
    bundle: Callable[[str, str], tuple[Path, Partition]], tmp_path: Path
) -> None:
    out = copy_bundle(bundle("digits-alexnet", "lop")[0], tmp_path)
    key = (out / "device-0" / SECRET_NAME).read_text()
    (out / "device-1" / "spare.key").write_text(key)
    with pytest.raises(CorruptFileError, match="device-1/spare.key` contains the secret key"):
        verify_bundle(out)
    (out / "device-1" / "spare.key").unlink()
    os.chmod(out / "device-3" / SECRET_NAME, 0o644)
    with pytest.raises(CorruptFileError, match="readable by other users"):
        verify_bundle(out)


def test_local_runtime_uses_distinct_loopback_ports() -> None:
    keys = curve_keypairs(3)
    config = RuntimeConfig.create([k.public for k in keys], local=True)
    endpoints = [e for n in config.nodes for e in (n.data, n.heartbeat)]
    assert all(e.startswith("tcp://127.0.0.1:") for e in endpoints)
    assert len(set(endpoints)) == 6
    boards = RuntimeConfig.create([k.public for k in keys])
    assert boards.nodes[2].data == "tcp://board-2:5550"
    assert RuntimeConfig.from_dict(boards.to_dict()) == boards
    assert "secret" not in repr(keys[0]).replace("secret=", "")  # repr hides the secret
    with pytest.raises(InvalidParameterError, match="heartbeat_s"):
        RuntimeConfig.create([k.public for k in keys], heartbeat_s=2.0, timeout_s=1.0)
    with pytest.raises(InvalidParameterError, match="Z85"):
        NodeKeys(public="short", secret=keys[0].secret)


# ----------------------------------------------------------------------------- writing
def test_a_non_empty_out_is_refused_unless_it_is_a_bundle_and_forced(
    digits_model: Callable[[str], LoadedModel],
    traced: Callable[[str], TracedModel],
    tmp_path: Path,
) -> None:
    model, trace = digits_model("digits-alexnet"), traced("digits-alexnet")
    partition = LOP().partition([u.num_neurons for u in trace.units], ND)
    out = tmp_path / "b"
    first = write_bundle(out, model, partition, keys=curve_keypairs(ND), traced=trace)
    with pytest.raises(InvalidParameterError, match="not empty; pass `--force`"):
        write_bundle(out, model, partition, keys=curve_keypairs(ND), traced=trace)
    second = write_bundle(out, model, partition, keys=curve_keypairs(ND), traced=trace, force=True)
    assert second.file_hashes != first.file_hashes  # new keys
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InvalidParameterError, match="holds no bundle"):
        write_bundle(other, model, partition, keys=curve_keypairs(ND), traced=trace, force=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_runtime_json_lists_every_public_key(
    bundle: Callable[[str, str], tuple[Path, Partition]],
) -> None:
    out, _ = bundle("digits-vgg-bn", "lop")
    data = json.loads((out / RUNTIME_NAME).read_text())
    assert [n["rank"] for n in data["nodes"]] == list(range(ND))
    assert data["timeout_s"] == 1.0 and data["heartbeat_s"] == 0.2
    node = json.loads((out / "device-2" / "node.json").read_text())
    assert node["rank"] == 2 and node["runtime"] == data
