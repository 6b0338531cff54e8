"""The client: streams images to every node, takes each image's first answer, in order.

It listens for results on the mesh's client address (CURVE server: only the nodes' keys get
in) and hears every node's heartbeats (to know when the mesh is up). At most ``in_flight``
images are outstanding; each carries the watermark (the oldest image without an answer). An
image with no answer after ``image_timeout_s`` counts as lost, so the stream never hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import zmq
from torch import Tensor

from robustdice_core import InvalidParameterError, RobustDiceError
from robustdice_core.bundle import RuntimeConfig
from runtime._transport import SecureContext, TrafficCounter, drain, mesh_keys, send_now
from runtime._wire import (
    DropCounter,
    DropReason,
    Heartbeat,
    Input,
    MalformedMessage,
    Result,
    WireLimits,
    decode,
    encode,
)

__all__ = ["Client", "StreamResult"]

Clock = Callable[[], float]


@dataclass
class StreamResult:
    """What came back: per image the logits (NaN when lost), who answered first and when."""

    logits: np.ndarray  # [N, classes]
    answered_by: np.ndarray  # [N] rank, -1 if lost
    sent_at: np.ndarray  # [N] client clock
    answered_at: np.ndarray  # [N] client clock, NaN if lost
    answers: np.ndarray  # [N] how many results arrived (duplicates from other nodes)
    started: float
    finished: float
    drops: DropCounter = field(default_factory=DropCounter)
    sent: TrafficCounter = field(default_factory=TrafficCounter)
    late_answers: int = 0  # results for an image already declared lost

    @property
    def lost(self) -> np.ndarray:
        return np.flatnonzero(self.answered_by < 0)

    @property
    def latency_s(self) -> np.ndarray:
        return self.answered_at - self.sent_at


class Client:
    """The client side of a mesh (a bundle's ``client.key``)."""

    def __init__(self, runtime: RuntimeConfig, secret_key: str) -> None:
        if runtime.client is None:
            raise InvalidParameterError(
                "this bundle's runtime.json has no client; deploy it again with `dse deploy`."
            )
        self.runtime = runtime
        self.limits = WireLimits(len(runtime.nodes))
        self._secure = SecureContext(secret_key, mesh_keys(runtime))
        self._results = self._secure.server(zmq.PULL, runtime.client.address)
        self._inputs = [
            self._secure.client(zmq.PUSH, n.data, n.public_key, immediate=True)
            for n in runtime.nodes
        ]
        self._beats: dict[zmq.Socket, int] = {}
        for node in runtime.nodes:
            sub = self._secure.client(zmq.SUB, node.heartbeat, node.public_key)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._beats[sub] = node.rank
        self._poller = zmq.Poller()
        self._poller.register(self._results, zmq.POLLIN)
        for sub in self._beats:
            self._poller.register(sub, zmq.POLLIN)
        self.last_heard: dict[int, float] = {}
        self.views: dict[int, frozenset[int]] = {}  # per node, the ranks it counts down
        self._next_id = 0  # image ids stay unique across streams: nodes forget old ones
        self._active: tuple[StreamResult, np.ndarray, Clock] | None = None

    def wait_ready(
        self, timeout_s: float, *, alive: Callable[[], list[int]] | None = None
    ) -> None:
        """Until every node has beaten once; ``alive`` names the ranks whose processes still
        run (a node that died while loading ends the wait with its rank in the error)."""
        deadline = time.monotonic() + timeout_s
        ranks = set(range(len(self.runtime.nodes)))
        while set(self.last_heard) != ranks:
            if time.monotonic() > deadline:
                missing = sorted(ranks - set(self.last_heard))
                raise RobustDiceError(
                    f"nodes {missing} did not come up within {timeout_s:g} s; see their errors "
                    "above."
                )
            if alive is not None:
                dead = sorted(ranks - set(alive()))
                if dead:
                    raise RobustDiceError(
                        f"node {dead[0]} exited while starting; see its error above."
                    )
            self._poll(0.05)

    def _heartbeat(self, rank: int, frames: list[zmq.Frame]) -> None:
        try:
            msg = decode(frames, self.limits)
        except MalformedMessage:
            return
        if isinstance(msg, Heartbeat) and msg.sender == rank:
            self.last_heard[rank] = time.monotonic()
            self.views[rank] = msg.down()

    def wait_view(self, nodes: list[int], down: frozenset[int], timeout_s: float) -> bool:
        """Until each of ``nodes`` reports ``down`` as its down set (True), or the timeout."""
        deadline = time.monotonic() + timeout_s
        self.views = {}
        while time.monotonic() < deadline:
            if all(self.views.get(r) == down for r in nodes):
                return True
            self._poll(0.02)
        return False

    def stream(
        self,
        images: Tensor,
        *,
        in_flight: int = 4,
        image_timeout_s: float = 10.0,
        before_send: Callable[[int], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> StreamResult:
        """Send ``images`` one by one (batch of 1), at most ``in_flight`` unanswered;
        ``before_send(i)`` runs before image ``i`` leaves (fault injection), ``on_tick``
        on every turn of the loop."""
        if in_flight < 1:
            raise InvalidParameterError(f"`in_flight` must be at least 1, got {in_flight}.")
        n = images.shape[0]
        result = StreamResult(
            logits=np.full((n, 0), np.nan, dtype=np.float32),
            answered_by=np.full(n, -1, dtype=np.int64),
            sent_at=np.full(n, np.nan),
            answered_at=np.full(n, np.nan),
            answers=np.zeros(n, dtype=np.int64),
            started=clock(),
            finished=float("nan"),
        )
        done = np.zeros(n, dtype=bool)  # answered or lost
        base = self._next_id
        self._next_id += n
        watermark = next_image = 0
        # answers are taken by every poll while this stream runs, also by a callback's (a
        # fault hook that waits for the mesh to agree must not discard them)
        self._active = (result, done, clock)
        while watermark < n:
            while next_image < n and next_image - watermark < in_flight:
                if before_send is not None:
                    before_send(next_image)
                batch = images[next_image : next_image + 1].contiguous().numpy()
                frames = encode(Input(base + next_image, base + watermark, batch))
                for socket in self._inputs:
                    if send_now(socket, frames):
                        result.sent.add("input", frames)
                result.sent_at[next_image] = clock()
                next_image += 1
            self._poll(0.01)
            if on_tick is not None:
                on_tick()
            now = clock()
            waiting = np.flatnonzero(~done[:next_image])
            expired = waiting[now - result.sent_at[waiting] > image_timeout_s]
            done[expired] = True
            while watermark < n and done[watermark]:
                watermark += 1
        result.finished = clock()
        self._active = None
        return result

    def _poll(self, timeout_s: float) -> None:
        stream = self._active
        for socket, frames in drain(self._poller, timeout_s):
            rank = self._beats.get(socket)
            if rank is not None:
                self._heartbeat(rank, frames)
                continue
            if stream is not None:
                self._take(frames, *stream, base=self._next_id - len(stream[1]))

    def _take(
        self,
        frames: list[zmq.Frame],
        result: StreamResult,
        done: np.ndarray,
        clock: Clock,
        *,
        base: int,
    ) -> None:
        try:
            msg = decode(frames, self.limits)
        except MalformedMessage as err:
            result.drops.add(err.reason)
            return
        if not isinstance(msg, Result) or self._secure.peer_of(frames[0]) != msg.sender:
            result.drops.add(DropReason.UNAUTHENTICATED)
            return
        i = msg.image_id - base
        if not 0 <= i < len(done):
            return  # an answer to an earlier stream
        result.answers[i] += 1
        if result.answered_by[i] >= 0:
            return
        if done[i]:
            result.late_answers += 1
            return
        logits = msg.data.reshape(-1)
        if result.logits.shape[1] == 0:
            result.logits = np.full((len(done), logits.size), np.nan, dtype=np.float32)
        result.logits[i] = logits
        result.answered_by[i] = msg.sender
        result.answered_at[i] = clock()
        done[i] = True

    def close(self) -> None:
        self._secure.close()
