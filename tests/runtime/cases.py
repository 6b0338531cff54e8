"""Shared runtime test material: partitions of the embedded models, node programs, bundles,
and an in-memory network that runs every node's engine in this process on a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustdice_core.bundle import plan_layout, split_state, write_bundle
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CDC, LOP, FullReplication, Partition, RobustDiCE
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import LoadedModel, load_model
from runtime import curve_keypairs
from runtime._engine import EngineConfig, NodeEngine
from runtime._membership import HeartbeatConfig
from runtime._program import NodeProgram
from runtime._transport import CLIENT, Channel, Received
from runtime._wire import Input, Result, WireLimits, decode, encode

ND = 4
HEARTBEAT = HeartbeatConfig(interval=0.05, timeout=0.3)


def partition_of(method: str, sizes: Sequence[int], nd: int = ND) -> Partition:
    """The method's partition; RobustDiCE on seeded random 2-d scores at threshold 0.4 (the
    runtime only cares about the structure: replicas, shares, clusters)."""
    if method == "robustdice":
        rng = np.random.default_rng(0)
        return RobustDiCE([rng.random((n, 2)) for n in sizes], 0.4).partition(sizes, nd)
    makers = {"lop": LOP, "cdc": CDC, "replication": FullReplication}
    return makers[method]().partition(sizes, nd)


@cache
def model(name: str) -> LoadedModel:
    return load_model(name)


def traced(name: str) -> TracedModel:
    m = model(name)
    return trace_model(m.spec.build(), m.spec.input_shape)


def unit_sizes(name: str) -> list[int]:
    return [u.num_neurons for u in traced(name).units]


def programs(name: str, partition: Partition) -> list[NodeProgram]:
    m = model(name)
    trace = trace_model(m.module, m.spec.input_shape)
    state = m.module.state_dict()
    layout = plan_layout(trace, state)
    shards = split_state(state, layout, partition)
    return [
        NodeProgram(traced(name), shards[r], layout, partition, r)
        for r in range(partition.num_devices)
    ]


def masked_net(name: str) -> MaskedNetwork:
    m = model(name)
    return MaskedNetwork(trace_model(m.module, m.spec.input_shape))


def digits_images(name: str, count: int) -> tuple[Tensor, Tensor]:
    test = model(name).spec.eval_data(None, calibration_size=None, test_size=count).test
    return test.images, test.labels


def make_bundle(out: Path, name: str, method: str, nd: int = ND) -> Partition:
    m = model(name)
    trace = trace_model(m.module, m.spec.input_shape)
    partition = partition_of(method, [u.num_neurons for u in trace.units], nd)
    keys = curve_keypairs(nd + 1)
    write_bundle(out, m, partition, keys=keys[:nd], client_key=keys[nd], traced=trace, local=True)
    return partition


# --------------------------------------------------------------------------- in memory
class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTransport:
    """One node's end of `FakeNetwork`; frames are copied as bytes, as a socket would."""

    rank: int
    network: FakeNetwork
    inbox: list[Received] = field(default_factory=list)

    def send(self, peer: int, frames: Sequence[Any], kind: str) -> bool:
        self.network.deliver(peer, Channel.DATA, frames, self.rank)
        return True

    def send_result(self, frames: Sequence[Any]) -> bool:
        self.network.results.append([bytes(f) for f in frames])
        return True

    def publish(self, frames: Sequence[Any], kind: str) -> None:
        for peer in range(self.network.size):
            if peer != self.rank:
                self.network.deliver(peer, Channel.HEARTBEAT, frames, self.rank)

    def poll(self, timeout_s: float) -> list[Received]:
        out, self.inbox = self.inbox, []
        return out


class FakeNetwork:
    """Every node's engine in this process; ``stopped`` nodes neither run nor receive."""

    def __init__(self, progs: Sequence[NodeProgram], *, in_flight: int = 2) -> None:
        self.size = len(progs)
        self.clock = FakeClock()
        self.results: list[list[bytes]] = []
        self.stopped: set[int] = set()  # neither run nor receive (a dead process)
        self.frozen: set[int] = set()  # do not run, but messages queue (SIGSTOP)
        self.answers: list[tuple[int, int, Tensor]] = []  # (sender, image, logits), all
        self.transports = [FakeTransport(r, self) for r in range(self.size)]
        self.engines = [
            NodeEngine(
                p, self.transports[p.rank], HEARTBEAT,
                config=EngineConfig(in_flight=in_flight), clock=self.clock, incarnation=1,
            )
            for p in progs
        ]  # fmt: skip
        self._next_id = 0

    def deliver(self, peer: int, channel: Channel, frames: Sequence[Any], sender: int) -> None:
        if peer not in self.stopped:
            copied = [bytes(memoryview(f)) for f in frames]
            self.transports[peer].inbox.append(Received(channel, copied, sender))  # type: ignore[arg-type]

    def run(self, seconds: float, step: float = 0.01) -> None:
        """Turn every running engine, advancing the fake clock by ``step`` per round."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            for r, engine in enumerate(self.engines):
                if r not in self.stopped and r not in self.frozen:
                    engine.turn(0.0)
            self.clock.now += step

    def infer(self, images: Tensor, *, settle: float = 1.0) -> Tensor:
        """Send every image to every running node, run until all are answered; the first
        answer per image, in order."""
        base = self._next_id
        self._next_id += images.shape[0]
        for i in range(images.shape[0]):
            frames = encode(Input(base + i, base, images[i : i + 1].numpy()))
            for r in range(self.size):
                if r not in self.stopped:  # a frozen node's queue holds the input
                    copied = [bytes(memoryview(f)) for f in frames]
                    self.transports[r].inbox.append(Received(Channel.DATA, copied, CLIENT))  # type: ignore[arg-type]
        answers: dict[int, Tensor] = {}
        limits = WireLimits(self.size)
        waited = 0.0
        while len(answers) < images.shape[0] and waited < settle + 10:
            self.run(0.05)
            waited += 0.05
            for frames in self.results:
                msg = decode(frames, limits)
                assert isinstance(msg, Result)
                logits = torch.from_numpy(msg.data.copy())
                self.answers.append((msg.sender, msg.image_id - base, logits))
                answers.setdefault(msg.image_id - base, logits)
            self.results.clear()
        assert len(answers) == images.shape[0], f"{images.shape[0] - len(answers)} unanswered"
        return torch.cat([answers[i] for i in range(images.shape[0])])
