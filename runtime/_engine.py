"""The node's event handler and inference engine, in one loop (DESIGN 3.8).

Each turn of `NodeEngine.turn`: drain every socket (heartbeats first matter: a node that was
stopped sees its peers' recent heartbeats before it judges them), feed the failure detector,
send a heartbeat when due, then move every image in flight as far as its data allows. Images
are generators (`NodeProgram.run`) paused at sync points, so one image's wait overlaps the
next image's computation.

Waiting at a sync point (image i, unit u) for peer p ends when p's data arrives, when p is
marked down (from then on p's share is zero at once, for every image and unit), or after
``timeout`` of waiting: then p is *absent* for the rest of image i (zero, no further waits
for it on that image) but stays a member. Data is keyed by (image, unit, sender); data for an
image this node has finished, or outside its window, is dropped and counted, so late data is
never mixed into another image. The client's watermark (the oldest image it has no answer
for) lets a node that was stopped skip the images the others already answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from robustdice_core import InvalidParameterError
from runtime._membership import HeartbeatConfig, HeartbeatSchedule, Membership, MembershipChange
from runtime._program import ImageRun, NodeProgram, UnitStep
from runtime._sync import SyncPlan, assemble, rebuild_lost_slice
from runtime._transport import CLIENT, Channel, Received
from runtime._wire import (
    Activation,
    ActivationDedup,
    DropCounter,
    DropReason,
    Heartbeat,
    Input,
    Join,
    Leave,
    MalformedMessage,
    Result,
    WireLimits,
    as_tensor,
    decode,
    encode,
)

__all__ = ["EngineConfig", "EngineStats", "NodeEngine", "Transport"]

Clock = Callable[[], float]


class Transport(Protocol):
    """What the engine needs from the sockets (`Mesh` implements it; tests may fake it)."""

    def send(self, peer: int, frames: Sequence[Any], kind: str) -> bool: ...

    def send_result(self, frames: Sequence[Any]) -> bool: ...

    def publish(self, frames: Sequence[Any], kind: str) -> None: ...

    def poll(self, timeout_s: float) -> list[Received]: ...


@dataclass(frozen=True)
class EngineConfig:
    """``in_flight``: images computed at once; ``window``: how many open images (running,
    queued, or known only from peers' data that came before the image) a node keeps; data
    for one more is dropped as out of window."""

    in_flight: int = 4
    window: int = 256

    def __post_init__(self) -> None:
        if self.in_flight < 1:
            raise InvalidParameterError(f"`in_flight` must be at least 1, got {self.in_flight}.")
        if self.window < self.in_flight:
            raise InvalidParameterError(
                f"`window` ({self.window}) must be at least `in_flight` ({self.in_flight})."
            )


@dataclass
class EngineStats:
    """A node's counters for its report."""

    images_started: int = 0
    images_answered: int = 0
    images_skipped: int = 0  # answered by others before this node got to them
    images_unadmitted: int = 0  # left to the others while peers still counted us down
    absent_waits: int = 0  # (image, peer) pairs zero-filled after a data timeout
    compute_s: float = 0.0
    drops: DropCounter = field(default_factory=DropCounter)
    first_input_at: float | None = None
    last_answer_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_started": self.images_started,
            "images_answered": self.images_answered,
            "images_skipped": self.images_skipped,
            "images_unadmitted": self.images_unadmitted,
            "absent_waits": self.absent_waits,
            "compute_s": self.compute_s,
            "drops": self.drops.to_dict(),
            "dropped_total": self.drops.total,
            "first_input_at": self.first_input_at,
            "last_answer_at": self.last_answer_at,
        }


@dataclass
class _Image:
    image_id: int
    run: ImageRun | None = None
    step: UnitStep | None = None
    wait_since: float = 0.0
    absent: set[int] = field(default_factory=set)
    data: dict[int, dict[int, tuple[Tensor, Tensor]]] = field(default_factory=dict)
    preacts: dict[int, dict[int, Tensor]] = field(default_factory=dict)
    decoded: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    image: Tensor | None = None
    batch: int = 1


class NodeEngine:
    """One node: its program, the data sync plan, the failure detector and the transport."""

    def __init__(
        self,
        program: NodeProgram,
        transport: Transport,
        heartbeat: HeartbeatConfig,
        *,
        config: EngineConfig | None = None,
        clock: Clock = time.monotonic,
        incarnation: int | None = None,
    ) -> None:
        self.program = program
        self.rank = program.rank
        self.transport = transport
        self.config = config or EngineConfig()
        self.heartbeat = heartbeat
        self.clock = clock
        partition = program.partition
        self.plan = SyncPlan(partition)
        self.limits = WireLimits(partition.num_devices)
        self.membership = Membership(self.rank, partition.num_devices, heartbeat, clock=clock)
        self.schedule = HeartbeatSchedule(heartbeat.interval, clock=clock)
        self.incarnation = incarnation if incarnation is not None else time.time_ns()
        self.stats = EngineStats()
        self._dedup = ActivationDedup()
        self._images: dict[int, _Image] = {}  # open images (inputs queued or running)
        self._finished_below = 0  # every image below this one is done or skipped
        self._finished: set[int] = set()  # done at or above ``_finished_below``
        self._joined = False
        self._views: dict[int, frozenset[int]] = {}  # per peer heard: whom it counts down

    # ----------------------------------------------------------------- loop
    def turn(self, max_wait_s: float) -> list[MembershipChange]:
        """One turn of the loop; waits at most ``max_wait_s`` for input."""
        if not self._joined:
            self._send_control(Join(self.rank, self.incarnation, 0, self.clock()))
            self._joined = True
        epoch = self.membership.epoch
        for received in self.transport.poll(min(max_wait_s, self._next_wake())):
            self._handle(received)
        changes = self.membership.check()
        self._beat(now=self.membership.epoch != epoch)
        start = time.perf_counter()
        self._advance()
        self.stats.compute_s += time.perf_counter() - start
        return changes

    def leave(self) -> None:
        """A clean shutdown: peers mark this node down at once."""
        self._send_control(Leave(self.rank, self.incarnation, self.membership.epoch, self.clock()))

    def _next_wake(self) -> float:
        now = self.clock()
        times = [self.schedule.next_at]
        deadline = self.membership.next_deadline()
        if deadline is not None:
            times.append(deadline)
        for image in self._images.values():
            if image.step is not None:
                times.append(image.wait_since + self.heartbeat.timeout)
        return max(0.0, min(times) - now) if times else self.heartbeat.interval

    def _beat(self, *, now: bool = False) -> None:
        """A heartbeat when due, or ``now`` (our view changed: a peer that came back learns
        at once that we count it alive again)."""
        if now:
            self.schedule.due_now()
        sequence = self.schedule.poll()
        if sequence is not None:
            mask = sum(1 << r for r in self.membership.down() if r < 64)
            hb = Heartbeat(
                self.rank, self.incarnation, self.membership.epoch, self.clock(), sequence, mask
            )
            self.transport.publish(encode(hb), "heartbeat")

    def _send_control(self, msg: Join | Leave) -> None:
        self.transport.publish(encode(msg), msg.kind.name.lower())

    # ----------------------------------------------------------------- input
    def _handle(self, received: Received) -> None:
        try:
            msg = decode(received.frames, self.limits)
        except MalformedMessage as err:
            self.stats.drops.add(err.reason)
            return
        if received.channel is Channel.HEARTBEAT:
            self._control(msg, received.peer)
        elif isinstance(msg, Input):
            self._input(msg, received.peer)
        elif isinstance(msg, Activation):
            self._activation(msg, received.peer)
        else:
            self.stats.drops.add(DropReason.FRAME_TYPE)

    def _control(self, msg: Any, peer: int | None) -> None:
        if not isinstance(msg, (Heartbeat, Join, Leave)) or msg.sender != peer:
            self.stats.drops.add(DropReason.UNAUTHENTICATED)
            return
        if isinstance(msg, Heartbeat):
            self.membership.observe(msg)
            self._views[msg.sender] = msg.down()
        elif isinstance(msg, Join):
            self.membership.observe_join(msg)
        else:
            self.membership.observe_leave(msg)

    def _input(self, msg: Input, peer: int | None) -> None:
        if peer != CLIENT:
            self.stats.drops.add(DropReason.UNAUTHENTICATED)
            return
        if self.stats.first_input_at is None:
            self.stats.first_input_at = self.clock()
        self._skip_below(msg.watermark)
        if not self._open(msg.image_id):
            return
        image = self._images.setdefault(msg.image_id, _Image(msg.image_id))
        if image.image is None and image.run is None:
            image.image = as_tensor(msg.data).clone()

    def _activation(self, msg: Activation, peer: int | None) -> None:
        unit_count = self.program.partition.num_units
        if msg.sender != peer or msg.sender == self.rank:
            self.stats.drops.add(DropReason.UNAUTHENTICATED)
            return
        if msg.unit >= unit_count:
            self.stats.drops.add(DropReason.BAD_FIELD)
            return
        if not self._open(msg.image_id):
            return
        if not self._dedup.accept(msg):
            self.stats.drops.add(DropReason.DUPLICATE)
            return
        image = self._images.setdefault(msg.image_id, _Image(msg.image_id))
        try:
            self._store(image, msg)
        except InvalidParameterError:
            self.stats.drops.add(DropReason.BAD_SHAPE)

    def _open(self, image_id: int) -> bool:
        """Whether data for ``image_id`` may still be used (counted as a drop if not)."""
        if image_id < self._finished_below or image_id in self._finished:
            self.stats.drops.add(DropReason.LATE)
            return False
        if image_id not in self._images and len(self._images) >= self.config.window:
            self.stats.drops.add(DropReason.OUT_OF_WINDOW)
            return False
        return True

    def _store(self, image: _Image, msg: Activation) -> None:
        unit = self.program.units[msg.unit]
        data = as_tensor(msg.data)
        if msg.preact:
            if not self.program.is_parity or msg.sender == self.plan.parity:
                raise InvalidParameterError("a pre-activation output for a non-parity node")
            rows = len(self.program.partition.assignments[msg.unit][msg.sender])
            dim = self.program.layer_channel_dim[msg.unit]
            if data.dim() < 2 or data.shape[dim] != rows:
                raise InvalidParameterError("pre-activation rows do not match the partition")
            image.preacts.setdefault(msg.unit, {})[msg.sender] = data
            return
        if msg.indices is not None:  # the parity's decoded slice: neurons on axis 1
            if msg.sender != self.plan.parity:
                raise InvalidParameterError("explicit indices from a data device")
            neurons = torch.from_numpy(msg.indices.astype(np.int64))
            if neurons.numel() and int(neurons.max()) >= unit.num_neurons:
                raise InvalidParameterError("neuron index out of range")
            data = data.movedim(1, unit.channel_dim)
            self._check_shape(unit.sync_shape, unit.channel_dim, data, neurons.numel())
            image.decoded[msg.unit] = (neurons, data)
            return
        if msg.sender == self.plan.parity:
            raise InvalidParameterError("a sync output from the parity device without indices")
        neurons = self.plan.incoming_neurons(msg.unit, msg.sender, self.rank)
        self._check_shape(unit.sync_shape, unit.channel_dim, data, neurons.numel())
        image.data.setdefault(msg.unit, {})[msg.sender] = (neurons, data)

    @staticmethod
    def _check_shape(sync_shape: tuple[int, ...], dim: int, data: Tensor, count: int) -> None:
        expected = list(sync_shape)
        expected[dim - 1] = count
        if data.dim() != len(expected) + 1 or list(data.shape[1:]) != expected:
            raise InvalidParameterError("activation shape does not match the partition")

    # ----------------------------------------------------------------- progress
    def _advance(self) -> None:
        for image_id in sorted(self._images):
            image = self._images.get(image_id)
            if image is None:
                continue
            if image.run is None and image.image is not None:
                if self._running() >= self.config.in_flight or not self._heard_everyone():
                    continue
                if not self._admitted():
                    self._drop_unadmitted(image)
                    continue
                self._start(image)
            while image.step is not None and self._ready(image):
                self._resume(image)

    def _heard_everyone(self) -> bool:
        """Every peer has beaten since we started, or is counted down: we know whether it
        counts us in (a restarted node learns the mesh's view before it computes)."""
        down = self.membership.down()
        return all(p in self._views or p in down for p in self._peers())

    def _admitted(self) -> bool:
        """No live peer counts us down. A node that was down is ignored by its peers until
        they hear it again; an image it computed meanwhile would see every peer absent and
        answer alone, so it leaves such images to the others."""
        down = self.membership.down()
        return all(self.rank not in self._views.get(p, ()) for p in self._peers() if p not in down)

    def _drop_unadmitted(self, image: _Image) -> None:
        self.stats.images_unadmitted += 1
        self._close(image.image_id)

    def _peers(self) -> list[int]:
        return [p for p in range(self.plan.num_devices) if p != self.rank]

    def _running(self) -> int:
        return sum(1 for i in self._images.values() if i.run is not None)

    def _start(self, image: _Image) -> None:
        assert image.image is not None
        self.stats.images_started += 1
        image.batch = image.image.shape[0]
        image.run = self.program.run(image.image)
        image.image = None
        self._on_step(image, next(image.run))

    def _on_step(self, image: _Image, step: UnitStep) -> None:
        image.step = step
        image.wait_since = self.clock()
        self._emit(image, step)

    def _emit(self, image: _Image, step: UnitStep) -> None:
        """Send this node's part of ``step`` to every live peer that needs it."""
        u = step.unit
        unit = self.program.units[u]
        epoch = self.membership.epoch
        down = self.membership.down()
        if step.partial is not None:
            for peer in range(self.plan.num_devices):
                if peer == self.rank or peer in down or not self.plan.sends(u, self.rank, peer):
                    continue
                part = self.plan.outgoing(u, self.rank, peer, step.partial, unit.channel_dim)
                msg = Activation(image.image_id, u, epoch, self.rank, part.contiguous().numpy())
                self.transport.send(peer, encode(msg), "activation")
        lost = self.plan.lost_data_device(down)
        parity = self.plan.parity
        if (
            step.preact is not None
            and lost is not None
            and parity is not None
            and not self.program.is_parity
            and lost != self.rank
        ):
            msg = Activation(
                image.image_id, u, epoch, self.rank, step.preact.contiguous().numpy(), preact=True
            )
            self.transport.send(parity, encode(msg), "preact")

    def _ready(self, image: _Image) -> bool:
        """Whether ``image``'s current step has everything it waits for (or waited enough)."""
        assert image.step is not None
        u = image.step.unit
        down = self.membership.down()
        got = image.data.get(u, {})
        missing = [
            s
            for s in self.plan.data_devices
            if s != self.rank
            and s not in down
            and s not in image.absent
            and s not in got
            and self.plan.sends(u, s, self.rank)
        ]
        lost = self.plan.lost_data_device(down)
        parity = self.plan.parity
        if lost is not None and parity is not None:
            missing += self._decode_missing(image, u, lost, parity, down)
        if not missing:
            return True
        if self.clock() - image.wait_since <= self.heartbeat.timeout:
            return False
        for peer in missing:
            image.absent.add(peer)
            self.stats.absent_waits += 1
        return True

    def _decode_missing(
        self, image: _Image, u: int, lost: int, parity: int, down: frozenset[int]
    ) -> list[int]:
        """CDC: who still has to send for the lost slice of unit ``u`` to be decoded."""
        if self.rank == parity:
            if u in image.decoded:
                return []
            have = image.preacts.get(u, {})
            waiting = [
                d
                for d in self.plan.data_devices
                if d not in (lost,) and d not in down and d not in image.absent and d not in have
                and len(self.program.partition.assignments[u][d])
            ]  # fmt: skip
            if not waiting:
                self._decode(image, u, lost, down)
            return waiting
        if parity in image.absent or u in image.decoded or not self.plan.sends(u, lost, self.rank):
            return []
        return [parity]

    def _decode(self, image: _Image, u: int, lost: int, down: frozenset[int]) -> None:
        """Parity device: rebuild ``lost``'s slice of unit ``u`` and send it to the peers."""
        assert image.step is not None and image.step.preact is not None
        partition = self.program.partition
        dim = self.program.layer_channel_dim[u]
        have = image.preacts.get(u, {})
        survivors = [have[d] for d in self.plan.data_devices if d != lost and d in have]
        if any(
            d not in have and len(partition.assignments[u][d])
            for d in self.plan.data_devices
            if d != lost
        ):
            return  # a survivor's part is missing (absent): the slice cannot be decoded
        rows = len(partition.assignments[u][lost])
        if rows == 0:  # nothing of this unit was lost
            image.decoded[u] = (torch.zeros(0, dtype=torch.long), image.step.preact[:, :0])
            return
        pre = rebuild_lost_slice(image.step.preact, survivors, rows, dim)
        out = self.program.decode(u, lost, pre)
        unit = self.program.units[u]
        neurons = torch.tensor(partition.assignments[u][lost], dtype=torch.long)
        image.decoded[u] = (neurons, out)
        wire = out.movedim(unit.channel_dim, 1).contiguous().numpy()
        msg = Activation(
            image.image_id, u, self.membership.epoch, self.rank, wire, indices=neurons.numpy()
        )
        frames = encode(msg)
        for peer in self.plan.data_devices:
            if peer not in down and peer != lost and self.plan.sends(u, lost, peer):
                self.transport.send(peer, frames, "decoded")

    def _resume(self, image: _Image) -> None:
        assert image.step is not None and image.run is not None
        step = image.step
        u = step.unit
        unit = self.program.units[u]
        down = self.membership.down()
        own = None
        rows = self.program.rows(u)
        if step.partial is not None and rows:
            own = (torch.tensor(rows, dtype=torch.long), step.partial)
        received = {
            s: part
            for s, part in image.data.pop(u, {}).items()
            if s not in down and s not in image.absent
        }
        decoded = image.decoded.pop(u, None)
        if decoded is not None and self.plan.lost_data_device(down) is not None:
            received[-1] = decoded
        image.preacts.pop(u, None)
        full = assemble(unit, image.batch, torch.float32, own, received)
        try:
            self._on_step(image, image.run.send(full))
        except StopIteration as stop:
            self._answer(image, stop.value)

    def _answer(self, image: _Image, logits: Tensor) -> None:
        image.step = None
        msg = Result(image.image_id, self.membership.epoch, self.rank, logits.contiguous().numpy())
        self.transport.send_result(encode(msg))
        self.stats.images_answered += 1
        self.stats.last_answer_at = self.clock()
        self._close(image.image_id)

    # ----------------------------------------------------------------- bookkeeping
    def _close(self, image_id: int) -> None:
        self._images.pop(image_id, None)
        self._dedup.forget_image(image_id)
        self._finished.add(image_id)
        while self._finished_below in self._finished:
            self._finished.discard(self._finished_below)
            self._finished_below += 1

    def _skip_below(self, watermark: int) -> None:
        """Drop every open image below the client's watermark: someone answered it."""
        if watermark <= self._finished_below:
            return
        for image_id in [i for i in self._images if i < watermark]:
            self.stats.images_skipped += 1
            self._images.pop(image_id)
            self._dedup.forget_image(image_id)
        self._finished = {i for i in self._finished if i >= watermark}
        self._finished_below = watermark
        while self._finished_below in self._finished:
            self._finished.discard(self._finished_below)
            self._finished_below += 1
