"""`run_local`: run a bundle on local nodes with faults, and what came of it (`RunSummary`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from robustdice_core import InvalidParameterError
from robustdice_core.bundle import read_manifest
from robustdice_core.costs import LinkProfile
from robustdice_core.io import atomic_write_bytes
from runtime._client import StreamResult
from runtime._launcher import Fault, FaultKind, LaunchOptions, LocalMesh, NodeLife
from runtime._link import link_name

__all__ = ["FaultReport", "NodeReport", "RunSummary", "Segment", "run_local"]


@dataclass(frozen=True)
class Segment:
    """Top-1 over images ``[first, last)``: between two faults."""

    first: int
    last: int
    label: str
    answered: int
    top1_pct: float  # lost images count as wrong
    failed: tuple[int, ...] | None = None  # nodes down in this segment (None: a freeze)
    simulated_top1_pct: float | None = None  # the failure simulation, same images and set


@dataclass(frozen=True)
class FaultReport:
    """A fault as applied, and how long the survivors took to notice (or the node to rejoin)."""

    fault: str
    at_s: float  # since the stream started
    detection_delay_s: float | None  # fail / freeze: first survivor to mark it down
    rejoin_delay_s: float | None  # restart / freeze: first peer to see it back


@dataclass(frozen=True)
class NodeReport:
    rank: int
    lives: int
    answered_first: int  # images whose returned answer came from this node
    images_answered: int
    bytes_sent_per_image: float
    payload_sent_per_image: float
    peak_rss_mb: float
    energy_j_per_image: float | None
    energy_source: str  # e.g. "measured:rapl", "estimated:cost-model"
    drops: dict[str, int]
    denied_connections: int
    exit: str  # "stopped" (clean), "killed", or an exit status
    link: dict[str, int] = field(default_factory=dict)  # emulated link: lost, dropped, ...


@dataclass
class RunSummary:
    """Everything `dse run` prints and writes as JSON."""

    bundle: str
    model: str
    method: str
    num_devices: int
    images: int
    answered: int
    lost: int
    top1_pct: float
    fps: float
    latency_ms: dict[str, float]
    in_flight: int
    timeout_s: float
    heartbeat_s: float
    link: str  # the emulated link profile's name, or "none" (plain loopback)
    segments: list[Segment]
    faults: list[FaultReport]
    nodes: list[NodeReport]
    expected_top1_pct: dict[str, float] = field(default_factory=dict)
    client_drops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; NaN (no labels, no report) becomes null."""
        data: dict[str, Any] = _no_nan(asdict(self))
        return data

    def write(self, path: Path | str) -> None:
        data = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_bytes(Path(path), (data + "\n").encode())


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def run_local(
    bundle: Path | str,
    images: Tensor,
    labels: Tensor | None,
    *,
    faults: Sequence[Fault] = (),
    options: LaunchOptions | None = None,
    report_dir: Path | None = None,
    simulate: bool = True,
    link: LinkProfile | str | None = None,
    image_timeout_s: float | None = None,
) -> tuple[RunSummary, StreamResult]:
    """Launch the bundle's nodes, stream ``images`` with ``faults``, stop, summarise.

    With ``simulate`` and labels, each segment between faults also gets the failure
    simulation's Top-1 for its images with the same nodes down (the model is reassembled
    from the shards). ``link`` (a link profile, its name or a ``.toml`` path) is emulated on
    the nodes' traffic; None: plain loopback. ``image_timeout_s``: how long the client waits
    for an image's answer before counting it lost (default: the mesh's, at least 10 s)."""
    if images.shape[0] < 1:
        raise InvalidParameterError("no images to stream; pass `--images` of at least 1.")
    manifest = read_manifest(bundle)
    options = options or LaunchOptions()
    mesh = LocalMesh(Path(bundle), options, report_dir, link=link)
    try:
        mesh.start()
        try:
            result = mesh.stream(images, faults=faults, image_timeout_s=image_timeout_s)
        finally:
            lives = mesh.stop()
        summary = _summary(mesh, manifest.model, manifest.partition.method, result, labels, lives)
        if simulate and labels is not None:
            summary.segments = _simulated(Path(bundle), summary.segments, images, labels)
        if manifest.expected is not None:
            summary.expected_top1_pct = dict(manifest.expected.top1_pct)
    finally:
        mesh.cleanup()
    return summary, result


def _summary(
    mesh: LocalMesh,
    model: str,
    method: str,
    result: StreamResult,
    labels: Tensor | None,
    lives: list[NodeLife],
) -> RunSummary:
    n = len(result.answered_by)
    correct = _correct(result, labels)
    answered = int((result.answered_by >= 0).sum())
    latency = result.latency_s[result.answered_by >= 0] * 1000
    return RunSummary(
        bundle=str(mesh.bundle),
        model=model,
        method=method,
        num_devices=mesh.num_devices,
        images=n,
        answered=answered,
        lost=n - answered,
        top1_pct=float("nan") if correct is None else 100 * float(correct.mean()),
        fps=answered / max(result.finished - result.started, 1e-9),
        latency_ms=_latency(latency),
        in_flight=mesh.options.in_flight,
        timeout_s=mesh.runtime.timeout_s,
        heartbeat_s=mesh.runtime.heartbeat_s,
        link=link_name(mesh.link_profile),
        segments=_segments(mesh, correct, result),
        faults=_faults(mesh, lives, result.started),
        nodes=_nodes(mesh, lives, result, n),
        client_drops=result.drops.to_dict(),
    )


def _correct(result: StreamResult, labels: Tensor | None) -> np.ndarray | None:
    if labels is None or result.logits.shape[1] == 0:
        return None if labels is None else np.zeros(len(result.answered_by), dtype=bool)
    predicted = np.nan_to_num(result.logits, nan=-np.inf).argmax(axis=1)
    return (predicted == labels.numpy()) & (result.answered_by >= 0)


def _latency(ms: np.ndarray) -> dict[str, float]:
    if ms.size == 0:
        return {}
    return {
        "mean": float(ms.mean()),
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
    }


def _segments(mesh: LocalMesh, correct: np.ndarray | None, result: StreamResult) -> list[Segment]:
    n = len(result.answered_by)
    cuts = sorted({a.fault.image for a in mesh.applied} | {0, n})
    labels = {a.fault.image: a.fault.label() for a in mesh.applied}
    down: set[int] | None = set()
    changes: dict[int, list[Fault]] = {}
    for a in mesh.applied:
        changes.setdefault(a.fault.image, []).append(a.fault)
    segments = []
    for first, last in zip(cuts, cuts[1:], strict=False):
        for fault in changes.get(first, []):
            if down is None or fault.kind is FaultKind.FREEZE:
                down = None
            elif fault.kind is FaultKind.FAIL:
                down.add(fault.rank)
            else:
                down.discard(fault.rank)
        if last <= first:
            continue
        part = slice(first, last)
        answered = int((result.answered_by[part] >= 0).sum())
        top1 = float("nan") if correct is None else 100 * float(correct[part].mean())
        label = "no fault yet" if first == 0 and first not in labels else f"after {labels[first]}"
        failed = None if down is None else tuple(sorted(down))
        segments.append(Segment(first, last, label, answered, top1, failed))
    return segments


def _simulated(
    bundle: Path, segments: list[Segment], images: Tensor, labels: Tensor
) -> list[Segment]:
    """Each segment with the simulation's Top-1 for its failure set (when it has one)."""
    from robustdice_core.bundle import reassemble
    from robustdice_core.masking import MaskedNetwork
    from robustdice_core.units import trace_model
    from robustdice_core.zoo import MODELS
    from runtime._simulate import simulated_logits

    manifest = read_manifest(bundle)
    spec = MODELS.get(manifest.model)
    module = spec.build()
    module.load_state_dict(reassemble(bundle, module))
    net = MaskedNetwork(trace_model(module, spec.input_shape, name=manifest.model))
    out = []
    for segment in segments:
        if segment.failed is None:
            out.append(segment)
            continue
        part = slice(segment.first, segment.last)
        logits = simulated_logits(net, manifest.partition, segment.failed, images[part])
        top1 = 100 * float((logits.argmax(1) == labels[part]).float().mean())
        out.append(replace(segment, simulated_top1_pct=top1))
    return out


def _faults(mesh: LocalMesh, lives: list[NodeLife], started: float) -> list[FaultReport]:
    events = [
        (life.rank, change)
        for life in lives
        if life.report is not None
        for change in life.report["membership"]
    ]
    reports = []
    for applied in mesh.applied:
        fault = applied.fault
        back_from = applied.resumed_at if fault.kind is FaultKind.FREEZE else applied.at
        detects = fault.kind in (FaultKind.FAIL, FaultKind.FREEZE)
        returns = fault.kind is not FaultKind.FAIL
        reports.append(
            FaultReport(
                fault=fault.label(),
                at_s=applied.at - started,
                detection_delay_s=_first_seen(events, fault.rank, ("down",), applied.at)
                if detects
                else None,
                rejoin_delay_s=_first_seen(
                    events, fault.rank, ("rejoined", "restarted"), back_from
                )
                if returns
                else None,
            )
        )
    return reports


def _first_seen(
    events: list[tuple[int, dict[str, Any]]],
    rank: int,
    kinds: tuple[str, ...],
    since: float | None,
) -> float | None:
    """Seconds from ``since`` until another node first recorded ``rank`` as one of ``kinds``."""
    if since is None:
        return None
    delays = [
        change["at"] - since
        for observer, change in events
        if observer != rank
        and change["rank"] == rank
        and change["event"] in kinds
        and change["at"] >= since
    ]
    return min(delays, default=None)


def _nodes(
    mesh: LocalMesh, lives: list[NodeLife], result: StreamResult, n: int
) -> list[NodeReport]:
    nodes = []
    for rank in range(mesh.num_devices):
        mine = [life for life in lives if life.rank == rank]
        reports = [life.report for life in mine if life.report is not None]
        sent = [r["sent"] for r in reports]
        total = sum(v["bytes"] for s in sent for v in s.values())
        payload = sum(v["payload_bytes"] for s in sent for v in s.values())
        drops: dict[str, int] = {}
        for r in reports:
            for reason, count in r["stats"]["drops"].items():
                drops[reason] = drops.get(reason, 0) + count
        last = mine[-1]
        energy = reports[-1]["meters"]["energy"] if reports else None
        link: dict[str, int] = {}
        for r in reports:
            for key, count in (r.get("link") or {}).items():
                link[key] = link.get(key, 0) + count
        nodes.append(
            NodeReport(
                rank=rank,
                lives=len(mine),
                answered_first=int((result.answered_by == rank).sum()),
                images_answered=sum(r["stats"]["images_answered"] for r in reports),
                bytes_sent_per_image=total / n,
                payload_sent_per_image=payload / n,
                peak_rss_mb=max((r["peak_rss_bytes"] for r in reports), default=math.nan) / 2**20,
                energy_j_per_image=None if energy is None else energy.get("joules_per_image"),
                energy_source="-" if energy is None else str(energy.get("source")),
                drops=drops,
                denied_connections=sum(r["denied_connections"] for r in reports),
                exit=_exit(last),
                link=link,
            )
        )
    return nodes


def _exit(life: NodeLife) -> str:
    if life.ended_by == "fail":
        return "killed"
    if life.exit_code == 0:
        return "stopped"
    return f"exit status {life.exit_code}"
