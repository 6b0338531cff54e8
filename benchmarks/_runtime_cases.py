"""Material for `bench_runtime`: bundles of the embedded models, the single-process baseline,
the nodes' traffic and membership histories, and the soak's fault plan and answer checks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustdice_core.bundle import write_bundle
from robustdice_core.costs import (
    ModelCostInfo,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.failures import failure_sets
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CDC, LOP, Partition, RobustDiCE
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LoadedModel, digits_splits, load_model
from runtime import (
    Fault,
    FaultKind,
    LaunchOptions,
    LocalMesh,
    NodeLife,
    StreamResult,
    curve_keypairs,
    simulated_logits,
)

# The cost model's traffic does not depend on the profiles; these match a loopback run.
DEVICE_PROFILE = "this_machine"
LINK_PROFILE = "loopback"
ROBUSTDICE_THRESHOLD = 0.4
ACTIVATION_KINDS = ("activation", "preact", "decoded")  # the nodes' message kinds with data


# --------------------------------------------------------------------------- bundles
def partition_of(method: str, sizes: Sequence[int], nd: int) -> Partition:
    """The method's partition; RobustDiCE on seeded random 2-d scores at threshold 0.4, as in
    the runtime tests (the runtime only cares about the structure: replicas, shares)."""
    if method == "robustdice":
        rng = np.random.default_rng(0)
        scores = [rng.random((n, 2)) for n in sizes]
        return RobustDiCE(scores, ROBUSTDICE_THRESHOLD).partition(sizes, nd)
    makers = {"lop": LOP, "cdc": CDC}
    if method not in makers:
        raise ValueError(f"`method` must be one of robustdice, lop, cdc; got {method!r}.")
    return makers[method]().partition(sizes, nd)


@dataclass(frozen=True, eq=False)
class ModelCase:
    """One embedded model: its weights, trace, cost figures and test images."""

    name: str
    loaded: LoadedModel
    traced: TracedModel
    images: Tensor
    labels: Tensor

    @property
    def sizes(self) -> list[int]:
        return [u.num_neurons for u in self.traced.units]

    @property
    def cost_info(self) -> ModelCostInfo:
        return ModelCostInfo.from_traced(self.traced)

    def masked_net(self) -> MaskedNetwork:
        return MaskedNetwork(trace_model(self.loaded.module, self.loaded.spec.input_shape))


@cache
def model_case(name: str) -> ModelCase:
    loaded = load_model(name)
    spec = loaded.spec
    test = spec.eval_data(None, calibration_size=None, test_size=None).test
    traced = trace_model(loaded.module, spec.input_shape)
    return ModelCase(name, loaded, traced, test.images, test.labels)


@dataclass(frozen=True)
class BundleCase:
    """A bundle written for one (model, method, ND)."""

    model: ModelCase
    method: str
    num_devices: int
    path: Path
    partition: Partition

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.method} ND={self.num_devices}"


def write_case(model: ModelCase, method: str, nd: int, root: Path) -> BundleCase:
    """Write the bundle of ``method`` on ``nd`` local nodes under ``root``."""
    partition = partition_of(method, model.sizes, nd)
    keys = curve_keypairs(nd + 1)
    path = root / f"{model.name}-{method}-{nd}"
    write_bundle(
        path, model.loaded, partition, keys=keys[:nd], client_key=keys[nd],
        traced=model.traced, local=True,
    )  # fmt: skip
    return BundleCase(model, method, nd, path, partition)


@contextlib.contextmanager
def running(case: BundleCase, options: LaunchOptions) -> Iterator[LocalMesh]:
    """The bundle's nodes up; stopped (reports read into ``mesh.lives``) and cleaned up after."""
    mesh = LocalMesh(case.path, options)
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
        mesh.cleanup()


# --------------------------------------------------------------------------- baseline
@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread (as each node runs), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plain_forward_s(module: torch.nn.Module, images: Tensor) -> float:
    """Seconds for the unpartitioned forward of ``images``, one by one (batch of 1)."""
    with one_thread(), torch.inference_mode():
        start = time.perf_counter()
        for i in range(images.shape[0]):
            module(images[i : i + 1])
        return time.perf_counter() - start


# --------------------------------------------------------------------------- traffic
def node_traffic(lives: Sequence[NodeLife], nd: int) -> list[dict[str, dict[str, int]]]:
    """Per rank, the messages / bytes / payload bytes sent per kind, over all its lives."""
    totals: list[dict[str, dict[str, int]]] = [{} for _ in range(nd)]
    for life in lives:
        if life.report is None:
            continue  # killed: no report
        for kind, counts in life.report["sent"].items():
            mine = totals[life.rank].setdefault(kind, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + int(value)
    return totals


def activation_payload(traffic: dict[str, dict[str, int]]) -> int:
    """Activation payload bytes of one node: sync outputs, CDC pre-activations, decoded."""
    return sum(traffic.get(k, {}).get("payload_bytes", 0) for k in ACTIVATION_KINDS)


def per_kind(traffic: Sequence[dict[str, dict[str, int]]], images: int) -> dict[str, float]:
    """Bytes per image of all nodes together: activation payload per kind, their headers,
    results, and control (heartbeats, join, leave)."""

    def total(kind: str, key: str = "bytes") -> float:
        return sum(t.get(kind, {}).get(key, 0) for t in traffic) / images

    out = {f"{k}_payload": total(k, "payload_bytes") for k in ACTIVATION_KINDS}
    out["activation_headers"] = sum(total(k) - total(k, "payload_bytes") for k in ACTIVATION_KINDS)
    out["result"] = total("result")
    out["control"] = sum(total(k) for k in ("heartbeat", "join", "leave"))
    return out


def input_bytes(streams: Sequence[StreamResult]) -> dict[str, int]:
    """What the client sent (images to every node), summed over ``streams``."""
    sent = [s.sent.to_dict().get("input", {}) for s in streams]
    return {k: sum(s.get(k, 0) for s in sent) for k in ("messages", "bytes", "payload_bytes")}


def estimated_tx(case: BundleCase) -> list[float]:
    """The cost model's bytes each device sends per image (fp32, `Exchange.MISSING`)."""
    costs = estimate_costs(
        case.partition,
        case.model.cost_info,
        load_device_profile(DEVICE_PROFILE),
        load_link_profile(LINK_PROFILE),
    )
    return [d.bytes_tx for d in costs.per_device]


# --------------------------------------------------------------------------- membership
def membership_events(lives: Sequence[NodeLife]) -> list[tuple[int, dict[str, Any]]]:
    """``(observer rank, change)`` for every membership change in the nodes' reports."""
    return [
        (life.rank, change)
        for life in lives
        if life.report is not None
        for change in life.report["membership"]
    ]


def detection_delay(
    kill_at: float, rank: int, events: Sequence[tuple[int, dict[str, Any]]]
) -> float | None:
    """Seconds from a kill (shared monotonic clock) to the first survivor's DOWN of ``rank``."""
    delays = [
        c["at"] - kill_at
        for observer, c in events
        if observer != rank and c["rank"] == rank and c["event"] == "down" and c["at"] >= kill_at
    ]
    return min(delays) if delays else None


def delay_stats(
    delays: Sequence[float | None], low: float, high: float, allowance: float
) -> dict[str, Any]:
    """min / mean / max of detection delays against the window ``[low, high]``; ``ok`` when
    every fault was detected and none is more than ``allowance`` outside the window."""
    seen = [d for d in delays if d is not None]
    outside = [max(low - d, d - high, 0.0) for d in seen]
    slack = max(outside, default=0.0)
    return {
        "window_s": [low, high],
        "delays_s": list(delays),
        "undetected": len(delays) - len(seen),
        "min_s": min(seen, default=None),
        "mean_s": float(np.mean(seen)) if seen else None,
        "max_s": max(seen, default=None),
        "in_window": outside.count(0.0),
        "slack_s": slack,  # farthest outside the window (0: all inside)
        "headroom_s": high - max(seen) if seen else None,
        "ok": len(seen) == len(delays) and slack <= allowance,
    }


def count_downs(lives: Sequence[NodeLife]) -> int:
    """DOWN events in the reports: in a run without faults, false suspicions."""
    return sum(1 for _, c in membership_events(lives) if c["event"] == "down")


# --------------------------------------------------------------------------- soak
def soak_images(count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` distinct digits (every split, exact duplicates removed), seeded order."""
    parts = digits_splits()
    images = torch.cat([p.images for p in parts])
    labels = torch.cat([p.labels for p in parts])
    _, first = np.unique(images.flatten(1).numpy(), axis=0, return_index=True)
    keep = np.sort(first)
    if count > keep.size:
        raise ValueError(f"`count` must be at most {keep.size} distinct digits, got {count}.")
    order = np.random.default_rng(seed).permutation(keep)[:count]
    index = torch.from_numpy(order)
    return images[index], labels[index]


@dataclass(frozen=True)
class PlannedFault:
    """A fault to inject ``gap`` images after the previous one ended (the node back)."""

    kind: FaultKind
    rank: int
    gap: int
    seconds: float = 0.0


def plan_faults(nd: int, faults: int, *, gap: tuple[int, int], seed: int) -> list[PlannedFault]:
    """``faults`` kills and freezes (1-2 s), half each in a seeded order, on random ranks;
    each kill is followed by the restart of the same node, ``gap`` images later."""
    rng = np.random.default_rng(seed)
    both = [FaultKind.FAIL, FaultKind.FREEZE] * faults
    kinds = [both[int(i)] for i in rng.permutation(faults)]
    plan: list[PlannedFault] = []
    for kind in kinds:
        rank, wait = int(rng.integers(nd)), int(rng.integers(*gap))
        if kind is FaultKind.FAIL:
            plan.append(PlannedFault(FaultKind.FAIL, rank, wait))
            plan.append(PlannedFault(FaultKind.RESTART, rank, int(rng.integers(*gap))))
        else:
            plan.append(PlannedFault(FaultKind.FREEZE, rank, wait, float(rng.uniform(1, 2))))
    return plan


@dataclass
class SoakDriver:
    """Injects a `PlannedFault` list into one stream, one node out at a time.

    A kill or freeze waits until every node beats with an empty down set, heard after the
    previous fault ended, and ``gap`` images have been sent since; a restart waits only for
    its gap. ``deadline`` (monotonic) bounds the whole stream."""

    mesh: LocalMesh
    plan: list[PlannedFault]
    deadline: float
    done: int = 0
    _from_image: int = 0
    _back_since: float = field(default_factory=time.monotonic)
    _freeze_ends: float = 0.0

    def before_send(self, image: int) -> None:
        if self.done >= len(self.plan):
            return
        planned = self.plan[self.done]
        if image < self._from_image + planned.gap or not self._ready(planned):
            return
        self.mesh.apply(Fault(planned.kind, planned.rank, image, planned.seconds))
        now = time.monotonic()
        self.done += 1
        self._from_image = image
        if planned.kind is FaultKind.FREEZE:
            self._freeze_ends = now + planned.seconds
        self._back_since = max(now, self._freeze_ends)

    def _ready(self, planned: PlannedFault) -> bool:
        if planned.kind is FaultKind.RESTART:
            return True
        client = self.mesh.client
        assert client is not None
        now = time.monotonic()
        return now >= self._freeze_ends and all(
            client.views.get(r) == frozenset() and client.last_heard.get(r, 0.0) > self._back_since
            for r in range(self.mesh.num_devices)
        )

    def on_tick(self) -> None:
        self.mesh.tick()
        if time.monotonic() > self.deadline:
            raise TimeoutError("the soak ran past its time bound (a hang?)")

    def finish(self) -> list[int]:
        """After the stream: let a freeze run out (thawed), restart killed nodes; returns
        the ranks restarted here."""
        time.sleep(max(0.0, self._freeze_ends - time.monotonic()))
        self.mesh.tick()
        dead = self.out()
        for rank in dead:
            self.mesh.restart(rank)
        return dead

    def out(self) -> list[int]:
        """Ranks killed and not restarted yet."""
        dead: set[int] = set()
        for planned in self.plan[: self.done]:
            if planned.kind is FaultKind.FAIL:
                dead.add(planned.rank)
            elif planned.kind is FaultKind.RESTART:
                dead.discard(planned.rank)
        return sorted(dead)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (%) of the answers; a lost image (NaN logits) counts as wrong."""
    if logits.shape[1] == 0:
        return 0.0
    predicted = np.nan_to_num(logits, nan=-np.inf).argmax(axis=1)
    return 100.0 * float((predicted == labels).mean())


def candidate_logits(
    net: MaskedNetwork, partition: Partition, images: Tensor
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The failure simulation's logits of ``images`` for every set of up to ND - 1 failed
    devices: ``(sets, [S, N, classes])``."""
    sets = failure_sets(partition.num_devices, range(partition.num_devices))
    logits = [simulated_logits(net, partition, s, images).numpy() for s in sets]
    return [tuple(s) for s in sets], np.stack(logits)


STEADY_ATOL = 1e-4
TRANSITION, UNANSWERED = -1, -2


@dataclass(frozen=True)
class AnswerCheck:
    """Per image, the failure set whose simulated logits its answer equals (`STEADY_ATOL`;
    `TRANSITION`: none, a fault during the image; `UNANSWERED`), and the mix-ups:
    ``mixed``: the answer equals another image's candidate and not its own (an answer sent
    for the wrong image); ``nearest_other``: the nearest candidate is another image's."""

    set_of: tuple[int, ...]
    sets: tuple[tuple[int, ...], ...]
    mixed: tuple[int, ...]
    nearest_other: tuple[int, ...]

    @property
    def steady(self) -> int:
        return sum(1 for s in self.set_of if s >= 0)

    @property
    def transition(self) -> int:
        return self.set_of.count(TRANSITION)

    def steady_sets(self) -> dict[str, int]:
        """How many images equal each failure set's simulation (``"none"``: no failure)."""
        counts: dict[str, int] = {}
        for s in self.set_of:
            if s >= 0:
                key = ",".join(map(str, self.sets[s])) or "none"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def nearest_other_steady(self) -> list[int]:
        """Steady images nearest another image's candidate: mix-ups (transition ones are
        ambiguous: their logits are no candidate, so the nearest one says little)."""
        return [i for i in self.nearest_other if self.set_of[i] >= 0]


def check_answers(
    logits: np.ndarray,
    answered: np.ndarray,
    candidates: np.ndarray,
    sets: Sequence[tuple[int, ...]],
) -> AnswerCheck:
    """Classify each image's answer (``logits [N, classes]``, ``candidates [S, N, classes]``)."""
    per_image = candidates.transpose(1, 0, 2)  # [N, S, classes]
    flat = per_image.reshape(-1, candidates.shape[2])
    set_of: list[int] = []
    mixed: list[int] = []
    nearest_other: list[int] = []
    for i in range(len(answered)):
        if not answered[i]:
            set_of.append(UNANSWERED)
            continue
        distance = np.abs(flat - logits[i]).max(axis=1).reshape(per_image.shape[:2])  # [N, S]
        own = distance[i]
        steady = bool(own.min() <= STEADY_ATOL)
        set_of.append(int(own.argmin()) if steady else TRANSITION)
        others = np.delete(distance, i, axis=0)
        if not steady and others.min() <= STEADY_ATOL:
            mixed.append(i)
        if others.min() < own.min():
            nearest_other.append(i)
    return AnswerCheck(tuple(set_of), tuple(sets), tuple(mixed), tuple(nearest_other))
