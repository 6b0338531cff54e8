"""The failure detector on a fake clock: timeouts, detection bound, rejoin, epochs, replays."""

from __future__ import annotations

import random

import pytest

from robustdice_core._errors import InvalidParameterError
from runtime._membership import (
    HeartbeatConfig,
    HeartbeatSchedule,
    Membership,
    MembershipChange,
    MembershipEvent,
)
from runtime._wire import Heartbeat, Join, Leave

CONFIG = HeartbeatConfig(interval=0.1, timeout=0.35)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def beat(sender: int, sequence: int, *, incarnation: int = 1, epoch: int = 0) -> Heartbeat:
    return Heartbeat(sender, incarnation, epoch, timestamp=0.0, sequence=sequence)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def view(clock: FakeClock) -> Membership:
    return Membership(0, 3, CONFIG, clock=clock)


def test_everyone_starts_alive_at_epoch_zero(view: Membership) -> None:
    assert view.alive() == {0, 1, 2} and view.down() == set() and view.epoch == 0
    assert view.next_deadline() == pytest.approx(100.35)


def test_silent_peer_is_marked_down_after_the_timeout(view: Membership, clock: FakeClock) -> None:
    view.observe(beat(1, 0))
    view.observe(beat(2, 0))
    clock.advance(0.35)
    assert view.check() == []  # silent for exactly the timeout: not yet
    clock.advance(0.2)
    view.observe(beat(2, 1))  # peer 2 keeps beating
    clock.advance(0.01)
    assert view.check() == [MembershipChange(1, MembershipEvent.DOWN, 1, clock.now)]
    assert view.down() == {1} and view.alive() == {0, 2} and not view.is_alive(1)
    assert view.epoch == 1
    assert view.check() == []  # reported once


def test_never_started_peer_goes_down_one_timeout_after_start(
    view: Membership, clock: FakeClock
) -> None:
    clock.advance(0.36)
    assert [c.rank for c in view.check()] == [1, 2]
    assert view.epoch == 2 and view.alive() == {0}
    assert view.next_deadline() is None


def test_regular_heartbeats_keep_a_peer_alive(view: Membership, clock: FakeClock) -> None:
    for seq in range(1000):
        clock.advance(CONFIG.interval)
        view.observe(beat(1, seq))
        view.observe(beat(2, seq))
        assert view.check() == []
    assert view.epoch == 0


def _detection_delay(rng: random.Random, *, by_deadline: bool) -> float:
    """Crash a beating peer at a random time; return crash-to-DOWN on the observer's clock."""
    clock = FakeClock(rng.uniform(0, 1000))
    view = Membership(0, 2, CONFIG, clock=clock)
    sender = HeartbeatSchedule(CONFIG.interval, clock=clock)
    clock.advance(rng.uniform(0, CONFIG.interval))  # the observer's ticks have another phase
    ticks = HeartbeatSchedule(CONFIG.interval, clock=clock)
    crash = clock.now + rng.uniform(0, 5)
    while True:
        # next event: the sender's beat (until it crashes) or the observer's check
        check_at = ticks.next_at
        if by_deadline:
            check_at = min(check_at, view.next_deadline() or check_at)
        if sender.next_at < min(crash, check_at):
            clock.now = sender.next_at
            seq = sender.poll()
            assert seq is not None
            view.observe(beat(1, seq))
            continue
        clock.now = check_at + (1e-9 if by_deadline else 0.0)
        ticks.poll()
        changes = view.check()
        if changes:
            assert clock.now > crash, "a live peer was declared down"
            return clock.now - crash


def test_detection_delay_is_at_most_timeout_plus_one_interval() -> None:
    rng = random.Random(7)
    delays = [_detection_delay(rng, by_deadline=False) for _ in range(300)]
    assert max(delays) <= CONFIG.detection_bound == CONFIG.timeout + CONFIG.interval
    assert min(delays) >= CONFIG.timeout - CONFIG.interval
    assert max(delays) > CONFIG.timeout  # the bound is approached, not vacuous


def test_checking_at_the_deadline_detects_within_the_timeout() -> None:
    rng = random.Random(8)
    delays = [_detection_delay(rng, by_deadline=True) for _ in range(300)]
    assert max(delays) <= CONFIG.timeout + 1e-6


def test_down_peer_is_still_heard_and_rejoins(view: Membership, clock: FakeClock) -> None:
    view.observe(beat(1, 0))
    clock.advance(1.0)
    view.observe(beat(2, 5))
    assert [c.rank for c in view.check()] == [1] and view.epoch == 1
    changes = view.observe(beat(1, 7))
    assert changes == [MembershipChange(1, MembershipEvent.REJOINED, 2, clock.now)]
    assert view.alive() == {0, 1, 2} and view.epoch == 2
    assert [c.event for c in view.history] == [MembershipEvent.DOWN, MembershipEvent.REJOINED]


def test_stale_and_replayed_heartbeats_are_ignored(view: Membership, clock: FakeClock) -> None:
    view.observe(beat(1, 10))
    view.observe(beat(2, 0))
    clock.advance(0.3)
    assert view.observe(beat(1, 10)) == []  # replay
    assert view.observe(beat(1, 3)) == []  # older
    clock.advance(0.06)
    view.observe(beat(2, 1))
    assert [c.rank for c in view.check()] == [1]  # the replays did not refresh it
    assert view.observe(beat(1, 9)) == [] and view.down() == {1}  # nor bring it back
    assert view.epoch == 1


def test_own_and_unknown_ranks_are_ignored(view: Membership) -> None:
    assert view.observe(beat(0, 1, epoch=50)) == [] and view.observe(beat(3, 1)) == []
    assert view.epoch == 0


def test_restart_with_a_new_incarnation(view: Membership, clock: FakeClock) -> None:
    view.observe(beat(1, 40, incarnation=1))
    clock.advance(0.1)
    changes = view.observe(beat(1, 0, incarnation=2))  # restarted faster than the timeout
    assert [(c.rank, c.event, c.epoch) for c in changes] == [(1, MembershipEvent.RESTARTED, 1)]
    assert view.observe(beat(1, 41, incarnation=1)) == []  # its previous life is stale
    assert view.observe(beat(1, 1, incarnation=2)) == [] and view.epoch == 1
    clock.advance(1.0)
    view.check()
    assert view.observe(beat(1, 0, incarnation=3))[0].event is MembershipEvent.REJOINED


def test_join_precedes_the_first_heartbeat(view: Membership, clock: FakeClock) -> None:
    clock.advance(1.0)
    view.check()
    changes = view.observe_join(Join(2, incarnation=9, epoch=0, timestamp=0.0))
    assert changes[0].event is MembershipEvent.REJOINED and 2 in view.alive()
    assert view.observe(beat(2, 0, incarnation=9)) == []  # accepted, no change
    assert view.observe_join(Join(2, incarnation=9, epoch=0, timestamp=0.0)) == []  # replay


def test_leave_marks_down_at_once_as_left(view: Membership) -> None:
    view.observe(beat(1, 0, incarnation=5))
    assert view.observe_leave(Leave(1, incarnation=4, epoch=0, timestamp=0.0)) == []  # stale
    changes = view.observe_leave(Leave(1, incarnation=5, epoch=0, timestamp=0.0))
    assert changes[0].event is MembershipEvent.LEFT and view.down() == {1}
    assert view.observe_leave(Leave(1, incarnation=5, epoch=0, timestamp=0.0)) == []


def test_epoch_follows_the_largest_reported(view: Membership, clock: FakeClock) -> None:
    view.observe(beat(1, 0, epoch=7))
    assert view.epoch == 7
    view.observe(beat(2, 0, epoch=3))
    assert view.epoch == 7
    clock.advance(1.0)
    view.observe(beat(2, 1, epoch=3))
    assert view.check()[0].epoch == 8


def test_history_is_bounded(clock: FakeClock) -> None:
    view = Membership(0, 2, CONFIG, clock=clock, history=3)
    for seq in range(5):
        clock.advance(1.0)
        view.check()
        view.observe(beat(1, seq))
    assert len(view.history) == 3 and view.epoch == 10


# ----------------------------------------------------------------------------- schedule
def test_schedule_is_due_at_once_then_every_interval(clock: FakeClock) -> None:
    schedule = HeartbeatSchedule(0.1, clock=clock)
    assert schedule.poll() == 0 and schedule.poll() is None
    assert schedule.time_until_due() == pytest.approx(0.1)
    clock.advance(0.05)
    assert schedule.poll() is None and schedule.time_until_due() == pytest.approx(0.05)
    clock.advance(0.07)  # late by 0.02: the next tick stays on the grid
    assert schedule.poll() == 1 and schedule.next_at == pytest.approx(100.2)
    clock.advance(1.0)  # a stall: one heartbeat, no burst
    assert schedule.poll() == 2 and schedule.poll() is None
    assert schedule.next_at == pytest.approx(clock.now + 0.1)


# ----------------------------------------------------------------------------- validation
def test_config_validates_and_round_trips() -> None:
    assert HeartbeatConfig.from_dict(CONFIG.to_dict()) == CONFIG
    for bad in ({"interval": 0.0}, {"interval": 0.2, "timeout": 0.2}, {"timeout": "x"},
                {"interval": 0.1, "timout": 1.0}):  # fmt: skip
        with pytest.raises(InvalidParameterError):
            HeartbeatConfig.from_dict(bad)
    with pytest.raises(InvalidParameterError, match="`timeout`"):
        HeartbeatConfig(interval=1.0, timeout=0.5)


def test_membership_arguments_are_checked(clock: FakeClock) -> None:
    with pytest.raises(InvalidParameterError, match="`rank`"):
        Membership(3, 3, CONFIG, clock=clock)
    with pytest.raises(InvalidParameterError, match="`num_devices`"):
        Membership(0, 0, CONFIG, clock=clock)
    with pytest.raises(InvalidParameterError, match="`interval`"):
        HeartbeatSchedule(0.0, clock=clock)


def test_change_round_trips() -> None:
    change = MembershipChange(2, MembershipEvent.RESTARTED, 4, 1.5)
    assert MembershipChange.from_dict(change.to_dict()) == change
    with pytest.raises(InvalidParameterError):
        MembershipChange.from_dict({"rank": 1, "event": "exploded", "epoch": 1, "at": 0})
