"""Heartbeat failure detector with a membership epoch (DESIGN 3.8).

Each node sends a `Heartbeat` every ``interval`` (`HeartbeatSchedule`) and feeds every decoded
heartbeat into its `Membership`. A peer not heard from for longer than ``timeout`` (on the
*receiver's* clock) is marked down by `Membership.check`; from then on its partials are
zero-filled at once. It is still listened to, and its next fresh heartbeat brings it back.
Every change of the alive set increments the epoch; a peer restarting (a larger incarnation)
while still counted alive increments it too, since its in-flight state is gone. The epoch also
follows the largest epoch peers report, so the nodes' epochs converge.

Detection delay: a peer that crashes at ``t`` sent its last heartbeat no earlier than
``t - interval`` and is therefore silent past ``timeout`` by ``t + timeout``; a node that
calls `check` at least every ``interval`` (e.g. on each of its own heartbeat ticks) marks it
down by ``t + timeout + interval``. With ``check`` driven by `Membership.next_deadline`, the
bound is ``timeout`` (plus network delay in both cases).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from robustdice_core._errors import InvalidParameterError
from runtime._wire import Heartbeat, Join, Leave, ReplayGuard

__all__ = [
    "HeartbeatConfig",
    "HeartbeatSchedule",
    "Membership",
    "MembershipChange",
    "MembershipEvent",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class HeartbeatConfig:
    """How often a node beats (``interval`` s) and how long silence means down (``timeout`` s).

    ``timeout`` must exceed ``interval`` so that a live peer is never declared down between
    two of its heartbeats; a few intervals leaves room for jitter and a lost heartbeat.
    """

    interval: float = 0.1
    timeout: float = 0.5

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise InvalidParameterError(f"`interval` must be positive, got {self.interval}.")
        if not self.timeout > self.interval:
            raise InvalidParameterError(
                f"`timeout` must be greater than `interval` ({self.interval}), got "
                f"{self.timeout}; use a few intervals, e.g. {5 * self.interval:g}."
            )

    @property
    def detection_bound(self) -> float:
        """Worst crash-to-detection delay when `check` runs every ``interval``."""
        return self.timeout + self.interval

    def to_dict(self) -> dict[str, float]:
        return {"interval": self.interval, "timeout": self.timeout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeartbeatConfig:
        if set(data) - {"interval", "timeout"}:
            raise InvalidParameterError(
                f"unknown heartbeat keys {sorted(set(data) - {'interval', 'timeout'})}; "
                "expected `interval` and `timeout`."
            )
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except (TypeError, ValueError) as err:
            raise InvalidParameterError(f"heartbeat config is malformed: {err}") from err


class HeartbeatSchedule:
    """When to send the next heartbeat, and its sequence number.

    The first heartbeat is due at once. Ticks stay on the ``interval`` grid; after a stall of
    more than one interval the schedule restarts from now instead of sending a burst.
    """

    def __init__(self, interval: float, *, clock: Clock) -> None:
        if not interval > 0:
            raise InvalidParameterError(f"`interval` must be positive, got {interval}.")
        self._interval = interval
        self._clock = clock
        self._next_at = clock()
        self._sequence = 0

    @property
    def next_at(self) -> float:
        return self._next_at

    def time_until_due(self) -> float:
        """Seconds until the next heartbeat is due (0 when due): a poll timeout."""
        return max(0.0, self._next_at - self._clock())

    def due_now(self) -> None:
        """Make the next heartbeat due at once (the grid restarts from it)."""
        self._next_at = min(self._next_at, self._clock())

    def poll(self) -> int | None:
        """The sequence number to send now, or None when no heartbeat is due yet."""
        now = self._clock()
        if now < self._next_at:
            return None
        self._next_at += self._interval
        if self._next_at <= now:
            self._next_at = now + self._interval
        sequence = self._sequence
        self._sequence += 1
        return sequence


class MembershipEvent(str, Enum):
    DOWN = "down"
    LEFT = "left"  # a clean shutdown (a Leave message), not a detected failure
    REJOINED = "rejoined"
    RESTARTED = "restarted"


@dataclass(frozen=True)
class MembershipChange:
    """``rank`` went DOWN / REJOINED / RESTARTED at local time ``at``; ``epoch`` is the new one."""

    rank: int
    event: MembershipEvent
    epoch: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "event": self.event.value, "epoch": self.epoch, "at": self.at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MembershipChange:
        try:
            return cls(
                int(data["rank"]), MembershipEvent(data["event"]), int(data["epoch"]),
                float(data["at"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidParameterError(f"membership change is malformed: {err}") from err


class Membership:
    """One node's view of which of the ``num_devices`` ranks are alive, and its epoch.

    Peers start alive, heard from at construction time, so a peer that never comes up is
    marked down one timeout after start. ``history`` bounds the changes kept for reports.
    """

    def __init__(
        self,
        rank: int,
        num_devices: int,
        config: HeartbeatConfig,
        *,
        clock: Clock,
        history: int = 1024,
    ) -> None:
        if num_devices < 1:
            raise InvalidParameterError(f"`num_devices` must be at least 1, got {num_devices}.")
        if not 0 <= rank < num_devices:
            raise InvalidParameterError(f"`rank` must be in [0, {num_devices}), got {rank}.")
        self.rank = rank
        self.num_devices = num_devices
        self.config = config
        self._clock = clock
        self._epoch = 0
        self._guard = ReplayGuard()
        now = clock()
        self._last_heard = {r: now for r in range(num_devices) if r != rank}
        self._down: set[int] = set()
        self._changes: deque[MembershipChange] = deque(maxlen=history)

    # ----------------------------------------------------------------- views
    @property
    def epoch(self) -> int:
        return self._epoch

    def alive(self) -> frozenset[int]:
        """Ranks counted alive, this node included."""
        return frozenset(range(self.num_devices)) - self._down

    def down(self) -> frozenset[int]:
        return frozenset(self._down)

    def is_alive(self, rank: int) -> bool:
        return rank not in self._down

    @property
    def history(self) -> tuple[MembershipChange, ...]:
        return tuple(self._changes)

    def next_deadline(self) -> float | None:
        """Local time at which the next alive peer times out, or None (no alive peers)."""
        times = [t for r, t in self._last_heard.items() if r not in self._down]
        return min(times) + self.config.timeout if times else None

    # ----------------------------------------------------------------- input
    def observe(self, hb: Heartbeat) -> list[MembershipChange]:
        """Feed a decoded heartbeat; stale or replayed ones (and our own) are ignored."""
        return self._heard(hb.sender, hb.incarnation, hb.epoch, hb.sequence)

    def observe_join(self, msg: Join) -> list[MembershipChange]:
        """A peer announcing itself: like a heartbeat that precedes its sequence 0."""
        return self._heard(msg.sender, msg.incarnation, msg.epoch, -1)

    def observe_leave(self, msg: Leave) -> list[MembershipChange]:
        """A peer's clean shutdown: down at once (an older incarnation's Leave is ignored)."""
        if not self._is_peer(msg.sender) or msg.sender in self._down:
            return []
        newest = self._guard.incarnation(msg.sender)
        if newest is not None and msg.incarnation < newest:
            return []
        self._down.add(msg.sender)
        return [self._change(msg.sender, MembershipEvent.LEFT)]

    def check(self) -> list[MembershipChange]:
        """Mark down every alive peer silent for longer than the timeout."""
        now = self._clock()
        changes = []
        for rank, heard in sorted(self._last_heard.items()):
            if rank not in self._down and now - heard > self.config.timeout:
                self._down.add(rank)
                changes.append(self._change(rank, MembershipEvent.DOWN))
        return changes

    # ----------------------------------------------------------------- helpers
    def _heard(
        self, sender: int, incarnation: int, epoch: int, sequence: int
    ) -> list[MembershipChange]:
        if not self._is_peer(sender):
            return []
        previous = self._guard.incarnation(sender)
        if not self._guard.accept_key(sender, incarnation, sequence):
            return []
        self._last_heard[sender] = self._clock()
        self._epoch = max(self._epoch, epoch)
        if sender in self._down:
            self._down.discard(sender)
            return [self._change(sender, MembershipEvent.REJOINED)]
        if previous is not None and incarnation > previous:
            return [self._change(sender, MembershipEvent.RESTARTED)]
        return []

    def _is_peer(self, rank: int) -> bool:
        return rank != self.rank and 0 <= rank < self.num_devices

    def _change(self, rank: int, event: MembershipEvent) -> MembershipChange:
        self._epoch += 1
        change = MembershipChange(rank, event, self._epoch, self._clock())
        self._changes.append(change)
        return change
