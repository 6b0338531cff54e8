"""One node of a deployed bundle: load its own shard and key, join the mesh, serve images.

`load_node` reads only what the node needs from the bundle (the manifest, its ``device-R``
folder: node.json, shard, secret key) and checks each (hashes, the key against the mesh's
public key). `serve` runs the engine until SIGTERM / SIGINT, then leaves the mesh cleanly and
writes its report (JSON) if asked.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from robustdice_core import RobustDiceError
from robustdice_core.bundle import (
    NODE_NAME,
    SECRET_NAME,
    Manifest,
    NodeConfig,
    RuntimeConfig,
    device_dir,
    load_shard,
    read_manifest,
)
from robustdice_core.bundle._manifest import read_json
from robustdice_core.costs import LinkProfile
from robustdice_core.io import atomic_write_bytes
from robustdice_core.units import trace_model
from robustdice_core.zoo import MODELS
from runtime._engine import EngineConfig, NodeEngine
from runtime._keys import curve_public_key
from runtime._link import FileLedger, Shaper, default_ledger_path, ledger_slots, resolve_link
from runtime._membership import HeartbeatConfig
from runtime._program import NodeProgram
from runtime._transport import Mesh
from runtime.meters import MeterReport, NodeMeters

__all__ = ["LoadedNode", "load_node", "serve"]


@dataclass
class LoadedNode:
    """What a node runs: its program, the mesh, and its secret key."""

    manifest: Manifest
    program: NodeProgram
    runtime: RuntimeConfig
    secret_key: str
    load_s: float


def load_node(bundle: Path | str, rank: int, runtime: RuntimeConfig | None = None) -> LoadedNode:
    """Node ``rank`` of the bundle in ``bundle``; ``runtime`` replaces the bundle's mesh
    (addresses, timings) for a local launch. Errors name the file and what to do."""
    start = time.perf_counter()
    root = Path(bundle)
    manifest = read_manifest(root)
    if not 0 <= rank < manifest.num_devices:
        raise RobustDiceError(
            f"the bundle in `{root}` has nodes 0..{manifest.num_devices - 1}, not {rank}."
        )
    node = NodeConfig.from_dict(read_json(root / device_dir(rank) / NODE_NAME))
    if node.rank != rank:
        raise RobustDiceError(
            f"`{root / device_dir(rank) / NODE_NAME}` is the config of node {node.rank}, not "
            f"{rank}: the bundle's folders were moved; deploy again."
        )
    mesh = runtime or node.runtime
    secret_path = root / device_dir(rank) / node.secret_key
    secret = _read_secret(secret_path)
    if curve_public_key(secret) != mesh.nodes[rank].public_key:
        raise RobustDiceError(
            f"`{secret_path}` is not the key of node {rank} in the bundle's mesh; copy the "
            "whole bundle folder again."
        )
    shard = load_shard(root, rank, manifest=manifest)
    spec = MODELS.get(manifest.model)
    traced = trace_model(spec.build(), spec.input_shape, name=manifest.model)
    program = NodeProgram(traced, shard, manifest.layout, manifest.partition, rank)
    return LoadedNode(manifest, program, mesh, secret, time.perf_counter() - start)


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError as err:
        raise RobustDiceError(
            f"`{path}` is missing; a node needs its own `{SECRET_NAME}` (copy the bundle's "
            "device folder to the board)."
        ) from err


def serve(
    bundle: Path | str,
    rank: int,
    *,
    runtime: dict[str, Any] | None = None,
    in_flight: int = 4,
    threads: int | None = None,
    report: Path | str | None = None,
    link: LinkProfile | str | None = None,
    link_state: Path | str | None = None,
    link_seed: int = 0,
) -> int:
    """Run node ``rank`` until SIGTERM / SIGINT; returns the exit status (0 clean, 2 error).

    ``link`` (a profile, its name or a ``.toml`` path) emulates that link on this node's sends
    to its peers; ``link_state`` is the file where the nodes on this host share the ports'
    and the medium's busy times (default: one in the temp folder named after the mesh's
    addresses); ``link_seed`` seeds the losses."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)  # from the start: a stop while loading is clean too
    signal.signal(signal.SIGINT, stop)
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.monotonic()
    try:
        node = load_node(
            bundle, rank, None if runtime is None else RuntimeConfig.from_dict(runtime)
        )
    except RobustDiceError as err:
        print(f"robustdice-node {rank}: error: {err}", file=sys.stderr)
        return 2
    try:
        shaper = _shaper(node.runtime, rank, link, link_state, link_seed)
    except RobustDiceError as err:
        print(f"robustdice-node {rank}: error: {err}", file=sys.stderr)
        return 2
    try:
        mesh = Mesh(rank, node.runtime, node.secret_key, shaper=shaper)
    except Exception as err:  # zmq errors: address in use, bad address
        print(
            f"robustdice-node {rank}: error: cannot open the mesh sockets ({err})", file=sys.stderr
        )
        return 2
    heartbeat = HeartbeatConfig(node.runtime.heartbeat_s, node.runtime.timeout_s)
    engine = NodeEngine(node.program, mesh, heartbeat, config=EngineConfig(in_flight=in_flight))
    ready = time.monotonic()
    meters = NodeMeters.best_available(estimate_j_per_image=_estimate(node.manifest, rank))
    meters.start()
    try:
        while not stopping:
            engine.turn(0.05)
        engine.leave()
        mesh.flush(0.5)
    finally:
        measured = meters.stop(images=engine.stats.images_answered)
        if report is not None:
            _write_report(Path(report), engine, mesh, node, started, ready, measured)
        mesh.close()
    return 0


def _shaper(
    runtime: RuntimeConfig,
    rank: int,
    link: LinkProfile | str | None,
    state: Path | str | None,
    seed: int,
) -> Shaper[Any] | None:
    profile = resolve_link(link)
    if profile is None:
        return None
    count = len(runtime.nodes)
    path = state or default_ledger_path([n.data for n in runtime.nodes])
    try:
        ledger = FileLedger(path, ledger_slots(count))
    except OSError as err:
        raise RobustDiceError(f"cannot open the link state file `{path}`: {err}.") from err
    return Shaper(profile, rank, count, ledger=ledger, seed=seed)


def _estimate(manifest: Manifest, rank: int) -> float | None:
    """The cost model's energy per image for this node, the meters' last resort."""
    if manifest.expected is None:
        return None
    return manifest.expected.costs.per_device[rank].energy_j


def _write_report(
    path: Path,
    engine: NodeEngine,
    mesh: Mesh,
    node: LoadedNode,
    started: float,
    ready: float,
    measured: MeterReport,
) -> None:
    data = {
        "rank": engine.rank,
        "pid": os.getpid(),
        "incarnation": engine.incarnation,
        "started_at": started,
        "ready_at": ready,
        "load_s": node.load_s,
        "stopped_at": time.monotonic(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "stats": engine.stats.to_dict(),
        "sent": mesh.sent.to_dict(),
        "received": mesh.received.to_dict(),
        "send_dropped": mesh.send_dropped,
        "link": None if mesh.shaper is None else mesh.shaper.stats.to_dict(),
        "denied_connections": mesh.denied,
        "membership": [c.to_dict() for c in engine.membership.history],
        "meters": measured.to_dict(),
    }
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
