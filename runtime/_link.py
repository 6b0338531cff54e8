"""Link emulation in the application: a node's sends delayed (and lost) as a link profile says.

This kernel has no netem, so each node shapes its own traffic before it reaches the loopback
socket. The semantics are the cost model's (``robustdice_core/costs/_estimate.py``,
``_gather_s``), so that a run measures what the model estimates:

- ``switched``: full-duplex ports on a non-blocking, output-queued switch. A message of ``b``
  bytes from s to r holds s's transmit port for ``b / bandwidth`` from when the port is free,
  then r's receive port for as long (from when s started, or when r's port is free, whichever
  is later); it arrives ``latency`` after both are done. Latency is a delay, not occupancy.
- ``shared``: one medium for every node of the run (WiFi): each message holds the medium for
  ``latency + b / bandwidth`` (medium access counts), one after the other, and arrives when
  its turn ends.
- loss: each message's transmission is lost with probability ``loss``. ``retransmit`` (TCP,
  what ZeroMQ runs on): it is sent again, holding the medium again, and arrives
  ``rto * (2**k - 1)`` late after ``k`` losses (Linux doubles the timeout); messages behind it
  on the same connection wait (in-order delivery). ``drop`` (a datagram link): it never
  arrives.

Busy-until times of the ports and the medium live in a `Ledger`: in memory for one process,
or a small file shared by the run's processes (`FileLedger`). A sender reserves its
transmission when it sends and queues the message with its arrival time; its loop releases
due messages to the socket (`Shaper.due`), and waits no longer than the next arrival
(`Shaper.next_release`). Nothing sleeps.

A loop reaches a due message some microseconds after it is due (the turn back to `due`),
which a real link does not add. `due` measures that lateness on every release and hands later
messages out that much early (`Shaper.lead_s`, an integrating controller of the lateness,
capped at `MAX_LEAD_S`), so the delay added is the profile's, not the profile's plus the
emulator's own. A release later than the cap is not a sample: the loop was computing, and a
lead learnt from it would send on-time messages early. The send itself (encoding, encryption)
is not compensated: a real node pays it too.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import random
import tempfile
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, MutableSequence, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from robustdice_core import InvalidParameterError
from robustdice_core.costs import LinkProfile, LossMode, Medium, load_link_profile

__all__ = [
    "FileLedger",
    "Ledger",
    "LinkStats",
    "MemoryLedger",
    "Shaper",
    "check_link",
    "default_ledger_path",
    "link_name",
    "resolve_link",
]

T = TypeVar("T")
Clock = Callable[[], float]

MAX_ATTEMPTS = 16  # Linux gives up on a segment after 15 retransmissions (tcp_retries2)
STALE_S = 3600.0  # a busy-until this far ahead is left from another boot's clock: ignored
LOCK_WAIT_S = 0.005  # a holder frozen (SIGSTOP) inside the lock must not stall its peers
MAX_LEAD_S = 1e-4  # releases are never moved earlier than this, however late a loop runs
LEAD_GAIN = 0.25  # share of each measured lateness the lead absorbs


def resolve_link(link: LinkProfile | str | os.PathLike[str] | None) -> LinkProfile | None:
    """A link profile from a name, a ``.toml`` path or a profile (checked); None stays None."""
    if link is None:
        return None
    profile = link if isinstance(link, LinkProfile) else load_link_profile(link)
    check_link(profile)
    return profile


def link_name(link: LinkProfile | None) -> str:
    """How a run records its link: the profile's name, or ``none`` (plain loopback)."""
    return "none" if link is None else link.name


def check_link(profile: LinkProfile) -> None:
    """Raise `InvalidParameterError` unless the profile's numbers can be emulated."""
    rules = [
        ("bandwidth_bytes_per_s", profile.bandwidth_bytes_per_s.value > 0, "> 0"),
        ("latency_s", profile.latency_s.value >= 0, ">= 0"),
        ("loss", 0 <= profile.loss.value < 1, "in [0, 1)"),
        ("retransmit_timeout_s", profile.retransmit_timeout_s.value > 0, "> 0"),
    ]
    for name, ok, rule in rules:
        value = getattr(profile, name).value
        if not ok or value != value:  # NaN fails every rule
            raise InvalidParameterError(
                f"link profile `{profile.name}`: `{name}` must be {rule}, got {value!r}; "
                "fix the profile file."
            )


def default_ledger_path(addresses: Sequence[str]) -> Path:
    """Where nodes of one mesh on one host meet when no ledger file is named: a file in the
    temp folder named after the mesh's addresses."""
    digest = hashlib.sha256("\n".join(addresses).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"robustdice-link-{digest}.ledger"


# ----------------------------------------------------------------------------- ledgers
class Ledger(Protocol):
    """Busy-until times (clock seconds): slot 0 the shared medium, then each node's transmit
    port, then each node's receive port."""

    def hold(self) -> AbstractContextManager[MutableSequence[float]]: ...


class MemoryLedger:
    """A ledger for the senders of one process (tests, benchmarks)."""

    def __init__(self, slots: int) -> None:
        self._values = [0.0] * slots

    @contextmanager
    def hold(self) -> Iterator[MutableSequence[float]]:
        yield self._values


class FileLedger:
    """A ledger shared by the processes of one host: a memory-mapped file of float64 under an
    ``flock``. The kernel releases the lock of a killed process, so a node SIGKILLed inside
    the few microseconds it holds the lock blocks nobody; one frozen there (SIGSTOP) is waited
    for at most `LOCK_WAIT_S`, after which the others go on without the lock."""

    def __init__(self, path: Path | str, slots: int) -> None:
        self.path = Path(path)
        self.unlocked = 0  # reservations made without the lock (a holder was frozen)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = 8 * slots
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)  # new bytes are zeros: 0.0, long past
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)
        self._values = memoryview(self._map).cast("d")

    @contextmanager
    def hold(self) -> Iterator[MutableSequence[float]]:
        locked = self._lock()
        try:
            yield self._values  # type: ignore[misc]
        finally:
            if locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock(self) -> bool:
        give_up = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    self.unlocked += 1
                    return False
                time.sleep(5e-5)

    def close(self) -> None:
        self._values.release()
        self._map.close()
        os.close(self._fd)


def ledger_slots(num_nodes: int) -> int:
    return 1 + 2 * num_nodes


# ----------------------------------------------------------------------------- shaper
@dataclass
class LinkStats:
    """What the emulated link did to one node's sends."""

    messages: int = 0  # accepted for transmission
    lost: int = 0  # transmissions lost (each retransmission of a message counts)
    dropped: int = 0  # messages never delivered (``drop`` mode)
    queue_full: int = 0  # refused: the link's queue held `queue_limit` messages

    def to_dict(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "lost": self.lost,
            "dropped": self.dropped,
            "queue_full": self.queue_full,
        }


class Shaper(Generic[T]):
    """One node's outgoing link: `submit` reserves a message's transmission and queues it
    with its arrival time; `due` hands back, in order per connection, what has arrived.

    ``link`` (in `submit`) names a connection (one socket); messages on one connection are
    released in the order they were submitted. ``receivers`` are the ranks one send reaches
    (a PUB send to every subscriber is one transmission to each)."""

    def __init__(
        self,
        profile: LinkProfile,
        rank: int,
        num_nodes: int,
        *,
        ledger: Ledger | None = None,
        seed: int = 0,
        clock: Clock = time.monotonic,
        queue_limit: int = 1000,
    ) -> None:
        check_link(profile)
        if not 0 <= rank < num_nodes:
            raise InvalidParameterError(f"`rank` must be in 0..{num_nodes - 1}, got {rank}.")
        self.profile = profile
        self.rank = rank
        self.num_nodes = num_nodes
        self.ledger: Ledger = ledger or MemoryLedger(ledger_slots(num_nodes))
        self.clock = clock
        self.queue_limit = queue_limit
        self.stats = LinkStats()
        self._rng = random.Random(seed * 1_000_003 + rank)
        self._queues: dict[Hashable, deque[tuple[float, T]]] = {}
        self._last: dict[Hashable, float] = {}  # last arrival per connection (in order)
        self.lead_s = 0.0  # how early due messages are released (the loop's own lateness)

    def submit(self, link: Hashable, receivers: Sequence[int], size: int, item: T) -> bool:
        """Reserve the transmission of ``size`` bytes to ``receivers`` and queue ``item``;
        False when the connection's queue is full (the caller counts it as a send drop)."""
        queue = self._queues.setdefault(link, deque())
        if len(queue) >= self.queue_limit:
            self.stats.queue_full += 1
            return False
        now = self.clock()
        attempts, delivered = self._fate()
        arrives = self._reserve(receivers, size, attempts, now)
        self.stats.messages += 1
        self.stats.lost += attempts - 1 if delivered else 1
        if not delivered:
            self.stats.dropped += 1
            return True
        rto = self.profile.retransmit_timeout_s.value
        arrives += rto * (2 ** (attempts - 1) - 1)
        arrives = max(arrives, self._last.get(link, arrives))
        self._last[link] = arrives
        queue.append((arrives, item))
        return True

    def due(self) -> list[tuple[Hashable, T]]:
        """Every queued message whose arrival time has come (less `lead_s`), oldest first per
        connection."""
        clock = self.clock()
        now = clock + self.lead_s
        out: list[tuple[Hashable, T]] = []
        latest: float | None = None  # the latest arrival handed out
        for link, queue in self._queues.items():
            while queue and queue[0][0] <= now:
                arrives, item = queue.popleft()
                out.append((link, item))
                latest = arrives if latest is None else max(latest, arrives)
        if latest is not None and clock - latest <= MAX_LEAD_S:
            # later than that, the loop was computing, not turning back to `due`: no sample
            late = clock - latest  # negative: released early by the lead
            self.lead_s = min(max(self.lead_s + LEAD_GAIN * late, 0.0), MAX_LEAD_S)
        return out

    def next_release(self) -> float | None:
        """The clock time the next arrival is released (less `lead_s`), None when nothing is
        queued."""
        heads = [queue[0][0] for queue in self._queues.values() if queue]
        return None if not heads else min(heads) - self.lead_s

    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _fate(self) -> tuple[int, bool]:
        """(transmissions, delivered) for one message."""
        loss = self.profile.loss.value
        if loss == 0:
            return 1, True
        if self.profile.loss_mode is LossMode.DROP:
            return 1, self._rng.random() >= loss
        attempts = 1
        while attempts < MAX_ATTEMPTS and self._rng.random() < loss:
            attempts += 1
        return attempts, True

    def _reserve(self, receivers: Sequence[int], size: int, attempts: int, now: float) -> float:
        """Book the ports (or the medium) for every transmission; the latest arrival."""
        wire = attempts * size / self.profile.bandwidth_bytes_per_s.value
        latency = self.profile.latency_s.value
        arrives = now
        with self.ledger.hold() as busy:
            if self.profile.medium is Medium.SHARED:
                for _ in receivers:
                    end = self._free(busy, 0, now) + attempts * latency + wire
                    busy[0] = arrives = end
                return arrives
            tx = 1 + self.rank
            for receiver in receivers:
                rx = 1 + self.num_nodes + receiver
                start = self._free(busy, tx, now)
                busy[tx] = start + wire
                busy[rx] = self._free(busy, rx, start) + wire
                arrives = max(arrives, busy[tx] + latency, busy[rx] + latency)
        return arrives

    @staticmethod
    def _free(busy: MutableSequence[float], slot: int, now: float) -> float:
        """When ``slot`` is free, from ``now`` on."""
        value = busy[slot]
        return now if value <= now or value > now + STALE_S else value
