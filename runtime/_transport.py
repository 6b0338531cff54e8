"""The mesh's sockets (pyzmq, CURVE): every node is server and client, no coordinator.

Per node:

- ``data`` (PULL, bound, CURVE server): activations from peers, images from the client.
- ``heartbeat`` (PUB, bound, CURVE server): this node's heartbeats, on their own channel.
- per peer a PUSH to its ``data`` and a SUB to its ``heartbeat`` (CURVE clients with the
  peer's public key), and a PUSH to the client's result address.

A ZAP handler (pyzmq's `ThreadAuthenticator`) admits only the bundle's keys: the nodes' and the
client's. A process without one of them completes no handshake, so nothing it sends reaches
the node. Each message's ZAP User-Id (the sender's public key) is checked against the rank it
claims, so a node cannot speak for another. Sends never block: PUSH sockets queue only on
send queue (the high-water mark) drops the message (counted), since a peer that cannot take
data is one the failure detector is about to mark down; nodes send nothing to peers known down.
Messages for a peer still starting wait in the queue, so a mesh that comes up unevenly loses
no data.

With a `Shaper` (link emulation, ``runtime/_link.py``), messages to peers and heartbeats wait
in the shaper until the emulated link delivers them; `Mesh.poll` releases them when due and
waits no longer than the next release. Results to the client are not shaped: the client
stands outside the emulated network, as the cost model leaves out inputs and results.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from robustdice_core.bundle import RuntimeConfig
from runtime._link import Shaper

__all__ = [
    "CLIENT",
    "Channel",
    "Mesh",
    "Received",
    "SecureContext",
    "SocketOptions",
    "TrafficCounter",
    "drain",
    "mesh_keys",
    "send_now",
]

CLIENT = -1  # the rank the client's key maps to
SPIN_S = 2e-4  # the end of a wait for a shaped release that is spun rather than slept


class Channel(str, Enum):
    DATA = "data"
    HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class Received:
    """One message as it came off a socket: its frames and the sender its key proves."""

    channel: Channel
    frames: list[zmq.Frame]
    peer: int | None  # rank of the authenticated key (CLIENT for the client), None unknown


@dataclass(frozen=True)
class SocketOptions:
    send_hwm: int = 1000
    receive_hwm: int = 10000
    reconnect_ms: int = 50
    reconnect_max_ms: int = 500


@dataclass
class TrafficCounter:
    """Messages and bytes (header + payload frames) per message kind and direction."""

    messages: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    payload_bytes: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, frames: Sequence[Any]) -> None:
        sizes = [_size(f) for f in frames]
        self.messages[key] += 1
        self.bytes[key] += sum(sizes)
        self.payload_bytes[key] += sum(sizes[1:])

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {
            key: {
                "messages": self.messages[key],
                "bytes": self.bytes[key],
                "payload_bytes": self.payload_bytes[key],
            }
            for key in sorted(self.messages)
        }


def _size(frame: object) -> int:
    if isinstance(frame, zmq.Frame):
        return len(frame.buffer)
    return memoryview(frame).nbytes  # type: ignore[arg-type]


class _Keys:
    """ZAP credentials provider: admits the bundle's public keys, counts the rest."""

    def __init__(self, allowed: dict[bytes, int]) -> None:
        self.allowed = allowed
        self.denied = 0

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed:
            return True
        self.denied += 1
        return False


class SecureContext:
    """A ZeroMQ context whose servers admit only ``allowed`` keys (ZAP), and socket makers
    for servers and clients with one CURVE key pair."""

    def __init__(
        self, secret_key: str, allowed: dict[str, int], options: SocketOptions | None = None
    ) -> None:
        self.options = options or SocketOptions()
        self._secret = secret_key.encode("ascii")
        self._public = zmq.curve_public(self._secret)
        self.ranks = dict(allowed)
        self.context = zmq.Context()
        self._auth = ThreadAuthenticator(self.context, log=logging.getLogger("runtime.zap"))
        self._auth.start()
        self._keys = _Keys({k.encode("ascii"): r for k, r in allowed.items()})
        self._auth.configure_curve_callback("*", credentials_provider=self._keys)
        self._sockets: list[zmq.Socket] = []

    @property
    def denied(self) -> int:
        """Connections the ZAP handler refused (unknown keys)."""
        return self._keys.denied

    def _common(self, kind: int) -> zmq.Socket:
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, self.options.send_hwm)
        socket.setsockopt(zmq.RCVHWM, self.options.receive_hwm)
        socket.setsockopt(zmq.RECONNECT_IVL, self.options.reconnect_ms)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, self.options.reconnect_max_ms)
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self._public
        self._sockets.append(socket)
        return socket

    def server(self, kind: int, address: str) -> zmq.Socket:
        socket = self._common(kind)
        socket.curve_server = True
        socket.bind(address)
        return socket

    def client(
        self, kind: int, address: str, server_key: str, *, immediate: bool = False
    ) -> zmq.Socket:
        """A CURVE client; ``immediate``: queue nothing until the connection is up (else
        messages wait, up to the high-water mark, for a peer still starting)."""
        socket = self._common(kind)
        socket.curve_serverkey = server_key.encode("ascii")
        if immediate:
            socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.connect(address)
        return socket

    def peer_of(self, frame: zmq.Frame) -> int | None:
        """The rank whose key sent ``frame`` to one of our servers (ZAP User-Id)."""
        try:
            return self.ranks.get(str(frame.get("User-Id")))
        except zmq.ZMQError:
            return None

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(linger=0)
        self._auth.stop()
        self.context.term()


def send_now(socket: zmq.Socket, frames: Sequence[Any]) -> bool:
    """Send without blocking; False when the socket cannot take the message now."""
    try:
        socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return False
    return True


def drain(poller: zmq.Poller, timeout_s: float) -> list[tuple[zmq.Socket, list[zmq.Frame]]]:
    """Everything ready within ``timeout_s``: one wait, then whatever else is ready now."""
    ready = dict(poller.poll(max(0, int(timeout_s * 1000))))
    out: list[tuple[zmq.Socket, list[zmq.Frame]]] = []
    while ready:
        for socket in ready:
            while True:
                try:
                    out.append((socket, socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)))
                except zmq.Again:
                    break
        ready = dict(poller.poll(0))
    return out


def mesh_keys(config: RuntimeConfig) -> dict[str, int]:
    """The bundle's public keys and the rank each proves (the client: `CLIENT`)."""
    keys = {n.public_key: n.rank for n in config.nodes}
    if config.client is not None:
        keys[config.client.public_key] = CLIENT
    return keys


@dataclass(frozen=True)
class _Shaped:
    """A message waiting in the link shaper: where it goes and how it is counted."""

    socket: zmq.Socket
    frames: Sequence[Any]
    kind: str


class Mesh:
    """One node's sockets. ``poll`` drains everything ready; sends never block."""

    def __init__(
        self,
        rank: int,
        config: RuntimeConfig,
        secret_key: str,
        *,
        options: SocketOptions | None = None,
        shaper: Shaper[_Shaped] | None = None,
    ) -> None:
        self.rank = rank
        self.shaper = shaper
        self.config = config
        self.sent = TrafficCounter()
        self.received = TrafficCounter()
        self.send_dropped = 0
        self._secure = SecureContext(secret_key, mesh_keys(config), options)
        me = config.nodes[rank]
        self._data = self._secure.server(zmq.PULL, me.data)
        self._beats = self._secure.server(zmq.PUB, me.heartbeat)
        self._peers: dict[int, zmq.Socket] = {}
        self._sub_rank: dict[zmq.Socket, int] = {}
        for node in config.nodes:
            if node.rank == rank:
                continue
            self._peers[node.rank] = self._secure.client(zmq.PUSH, node.data, node.public_key)
            sub = self._secure.client(zmq.SUB, node.heartbeat, node.public_key)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._sub_rank[sub] = node.rank
        self._to_client = (
            None
            if config.client is None
            else self._secure.client(zmq.PUSH, config.client.address, config.client.public_key)
        )
        self._poller = zmq.Poller()
        self._poller.register(self._data, zmq.POLLIN)
        for sub in self._sub_rank:
            self._poller.register(sub, zmq.POLLIN)

    def send(self, peer: int, frames: Sequence[Any], kind: str) -> bool:
        """Queue ``frames`` for ``peer``; False (and counted) when it cannot take them now."""
        socket = self._peers[peer]
        if self.shaper is not None:
            return self._shape(peer, (peer,), _Shaped(socket, frames, kind))
        return self._count(send_now(socket, frames), frames, kind)

    def send_result(self, frames: Sequence[Any]) -> bool:
        if self._to_client is None:
            return False
        return self._count(send_now(self._to_client, frames), frames, "result")

    def publish(self, frames: Sequence[Any], kind: str) -> None:
        if self.shaper is not None:
            self._shape(Channel.HEARTBEAT, list(self._peers), _Shaped(self._beats, frames, kind))
            return
        self._beats.send_multipart(frames, copy=False)
        self.sent.add(kind, frames)

    def _shape(self, link: object, receivers: Sequence[int], item: _Shaped) -> bool:
        assert self.shaper is not None
        size = sum(_size(f) for f in item.frames)
        if not receivers or self.shaper.submit(link, receivers, size, item):
            return True
        self.send_dropped += 1
        return False

    def _release(self) -> None:
        """Hand every shaped message that is due to its socket."""
        if self.shaper is None:
            return
        for _, item in self.shaper.due():
            if item.socket is self._beats:
                self._beats.send_multipart(item.frames, copy=False)
                self.sent.add(item.kind, item.frames)
            else:
                self._count(send_now(item.socket, item.frames), item.frames, item.kind)

    def _bridge(self, upcoming: float) -> None:
        """ZeroMQ polls in whole milliseconds: the last fraction of a millisecond before a
        release is slept, less `SPIN_S` (a sleep overshoots by tens of microseconds), which
        is spun; a loop that spun whole milliseconds would starve the sockets' I/O thread."""
        assert self.shaper is not None
        rest = upcoming - self.shaper.clock()
        if not 0 < rest < 1e-3:
            return
        if rest > SPIN_S:
            time.sleep(rest - SPIN_S)
        while self.shaper.clock() < upcoming:
            pass

    def flush(self, timeout_s: float) -> None:
        """Release what the shaper still holds as it comes due, for at most ``timeout_s``
        (a clean shutdown: the Leave reaches the peers)."""
        give_up = time.monotonic() + timeout_s
        while self.shaper is not None and self.shaper.pending():
            self._release()
            upcoming = self.shaper.next_release()
            now = time.monotonic()
            if upcoming is None or upcoming > give_up:
                return
            time.sleep(max(0.0, upcoming - now))

    def _count(self, ok: bool, frames: Sequence[Any], kind: str) -> bool:
        if ok:
            self.sent.add(kind, frames)
        else:
            self.send_dropped += 1
        return ok

    def poll(self, timeout_s: float) -> list[Received]:
        """Everything ready within ``timeout_s``; heartbeats are proven by the socket they
        came on (its server key), data by its ZAP User-Id."""
        self._release()
        shaper = self.shaper
        upcoming = None if shaper is None else shaper.next_release()
        if shaper is not None and upcoming is not None:
            until = upcoming - shaper.clock()
            if until > timeout_s:
                upcoming = None  # the caller's timeout ends first
            timeout_s = min(timeout_s, max(0.0, until))
        ready = drain(self._poller, timeout_s)
        while shaper is not None and upcoming is not None and not ready:
            rest = upcoming - shaper.clock()  # ZeroMQ's coarse clock may end a wait early
            if rest < 1e-3:
                break
            ready = drain(self._poller, rest)
        if upcoming is not None and not ready:
            self._bridge(upcoming)
        out = []
        for socket, frames in ready:
            self.received.add("data" if socket is self._data else "heartbeat", frames)
            if socket is self._data:
                out.append(Received(Channel.DATA, frames, self._secure.peer_of(frames[0])))
            else:
                out.append(Received(Channel.HEARTBEAT, frames, self._sub_rank[socket]))
        self._release()
        return out

    @property
    def denied(self) -> int:
        return self._secure.denied

    def close(self) -> None:
        self._secure.close()
