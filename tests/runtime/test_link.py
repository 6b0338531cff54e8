"""Link emulation: the shaper on an injected clock (bandwidth, latency, order, shared medium,
loss), profile checks, and one real mesh whose logits stay exact under an emulated link."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustdice_core._errors import CorruptFileError, InvalidParameterError, UnknownNameError
from robustdice_core.bundle import RuntimeConfig
from robustdice_core.costs import LinkProfile, LossMode, Medium, ProfileValue, load_profile
from runtime import (
    FileLedger,
    LaunchOptions,
    LocalMesh,
    MemoryLedger,
    Mesh,
    Shaper,
    curve_keypairs,
    resolve_link,
)
from runtime._link import LEAD_GAIN, MAX_LEAD_S, ledger_slots
from runtime._simulate import simulated_logits
from runtime._transport import Received

from .cases import FakeClock, digits_images, make_bundle, masked_net, model

# Longer than test_local_mesh's FAST: a resent message (20 ms, 40 ms, ...) on a loaded
# machine must not pass for a failed peer, or it would be zero-filled.
PATIENT = LaunchOptions(in_flight=4, timeout_s=3.0, heartbeat_s=0.2)

MB = 1_000_000


def link(
    medium: Medium = Medium.SWITCHED,
    *,
    bandwidth: float = MB,
    latency: float = 0.01,
    loss: float = 0.0,
    mode: LossMode = LossMode.RETRANSMIT,
    rto: float = 0.2,
) -> LinkProfile:
    def v(x: float) -> ProfileValue:
        return ProfileValue(x, "test", False)

    return LinkProfile(
        "test_link", "a test link", medium, v(bandwidth), v(latency), v(1e-9), v(1e-9),
        loss=v(loss), retransmit_timeout_s=v(rto), loss_mode=mode,
    )  # fmt: skip


def shaper(profile: LinkProfile, clock: FakeClock, rank: int = 0, **kw: object) -> Shaper[str]:
    return Shaper(profile, rank, 4, clock=clock, **kw)  # type: ignore[arg-type]


def drain_at(s: Shaper[str], clock: FakeClock, t: float) -> list[str]:
    clock.now = t
    return [item for _, item in s.due()]


def test_a_message_arrives_after_latency_plus_size_over_bandwidth() -> None:
    clock = FakeClock(100.0)
    s = shaper(link(latency=0.01), clock)
    assert s.submit(1, [1], 500_000, "a")
    assert s.next_release() == pytest.approx(100.51)
    assert drain_at(s, clock, 100.509) == []
    assert drain_at(s, clock, 100.51) == ["a"]
    assert s.next_release() is None and s.pending() == 0


def test_one_port_carries_its_bandwidth_back_to_back() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(latency=0.01), clock)
    for i, peer in enumerate([1, 2, 3, 1]):  # the transmit port serialises every peer
        s.submit(peer, [peer], MB, f"m{i}")
    releases = []
    while s.next_release() is not None:
        t = s.next_release()
        assert t is not None
        releases += [(t, m) for m in drain_at(s, clock, t)]
    assert [m for _, m in releases] == ["m0", "m1", "m2", "m3"]
    assert [t for t, _ in releases] == pytest.approx([1.01, 2.01, 3.01, 4.01])


def test_switched_receive_port_serialises_senders_to_one_node_only() -> None:
    clock = FakeClock(0.0)
    ledger = MemoryLedger(ledger_slots(4))
    a, b = (shaper(link(latency=0.0), clock, rank=r, ledger=ledger) for r in (0, 1))
    a.submit(2, [2], MB, "a")
    b.submit(2, [2], MB, "b")  # same receive port: after a
    assert (a.next_release(), b.next_release()) == pytest.approx((1.0, 2.0))
    c, d = (shaper(link(latency=0.0), clock, rank=r) for r in (0, 1))
    c.submit(2, [2], MB, "c")
    d.submit(3, [3], MB, "d")  # other ledger, other ports: in parallel
    assert (c.next_release(), d.next_release()) == pytest.approx((1.0, 1.0))


def test_shared_medium_serialises_two_senders_latency_included() -> None:
    clock = FakeClock(0.0)
    ledger = MemoryLedger(ledger_slots(4))
    a, b = (shaper(link(Medium.SHARED, latency=0.1), clock, rank=r, ledger=ledger) for r in (0, 1))
    a.submit(2, [2], MB, "a")
    b.submit(3, [3], MB, "b")  # another pair, same air
    assert (a.next_release(), b.next_release()) == pytest.approx((1.1, 2.2))
    assert drain_at(a, clock, 5.0) == ["a"]  # the medium idle again: no debt carried over
    a.submit(2, [2], MB // 2, "c")
    assert a.next_release() == pytest.approx(5.6 - a.lead_s)  # less the late loop's lead


def test_a_publish_to_three_peers_is_three_transmissions() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(Medium.SHARED, latency=0.1), clock)
    s.submit("beat", [1, 2, 3], MB, "hb")
    assert s.next_release() == pytest.approx(3.3)


def test_file_ledger_shares_the_medium_between_openers(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    path = tmp_path / "link.ledger"
    ledgers = [FileLedger(path, ledger_slots(4)) for _ in range(2)]  # as two processes would
    try:
        a, b = (
            shaper(link(Medium.SHARED, latency=0.0), clock, rank=r, ledger=ledgers[r])
            for r in (0, 1)
        )
        a.submit(1, [1], MB, "a")
        b.submit(0, [0], MB, "b")
        assert (a.next_release(), b.next_release()) == pytest.approx((1.0, 2.0))
        assert path.stat().st_size == 8 * ledger_slots(4)
    finally:
        for ledger in ledgers:
            ledger.close()


def test_the_clock_is_waited_for_not_slept_on() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(latency=0.5), clock)
    s.submit(1, [1], 0, "x")
    assert drain_at(s, clock, 0.25) == [] and s.pending() == 1
    assert s.next_release() == pytest.approx(0.5)


def test_a_late_loop_is_compensated_by_releasing_later_messages_early() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(latency=0.01), clock)
    s.submit(1, [1], 0, "a")
    assert drain_at(s, clock, 0.01 + 40e-6) == ["a"]  # the loop came back 40 us late
    assert s.lead_s == pytest.approx(LEAD_GAIN * 40e-6)
    s.submit(1, [1], 0, "b")  # arrives at 0.01004 + 0.01
    assert s.next_release() == pytest.approx(0.02004 - LEAD_GAIN * 40e-6)
    assert drain_at(s, clock, 0.02004 - LEAD_GAIN * 40e-6 + 40e-6) == ["b"]
    for _ in range(100):  # always 40 us late after its release time: the lead converges
        s.submit(1, [1], 0, "c")
        t = s.next_release()
        assert t is not None and drain_at(s, clock, t + 40e-6) == ["c"]
    assert s.lead_s == pytest.approx(40e-6, rel=1e-3) and s.lead_s <= MAX_LEAD_S
    s.submit(1, [1], 0, "d")  # a loop busy computing for 2 ms: not a sample
    drain_at(s, clock, clock.now + 1.0)
    assert s.lead_s == pytest.approx(40e-6, rel=1e-3)
    for _ in range(200):  # punctual releases (woken at `next_release`) decay it again
        s.submit(1, [1], 0, "e")
        t = s.next_release()
        assert t is not None and drain_at(s, clock, t) == ["e"]
    assert s.lead_s < 1e-9


def _all_releases(s: Shaper[str], clock: FakeClock) -> list[tuple[float, str]]:
    out = []
    while (t := s.next_release()) is not None:
        out += [(t, m) for m in drain_at(s, clock, t)]
    return out


def test_retransmitted_losses_arrive_late_and_in_order() -> None:
    profile = link(latency=0.001, loss=0.2, rto=0.2)

    def run(seed: int) -> tuple[Shaper[str], list[tuple[float, str]]]:
        clock = FakeClock(0.0)
        s = shaper(profile, clock, seed=seed)
        for i in range(400):
            clock.now = i * 0.01  # 10 ms apart, 1 KB each: the port is never the bottleneck
            s.submit(1, [1], 1000, f"m{i}")
        return s, _all_releases(s, clock)

    s, releases = run(seed=3)
    assert [m for _, m in releases] == [f"m{i}" for i in range(400)]  # all, in order
    assert 0.12 < s.stats.lost / 400 < 0.3  # about one in five transmissions lost
    previous = 0.0
    for i, (t, _) in enumerate(releases):
        # a transmissions: a times on the wire (1 ms each), the timeout doubled on each loss
        delays = [0.001 + a * 0.001 + 0.2 * (2 ** (a - 1) - 1) for a in range(1, 17)]
        assert t == previous or any(t - i * 0.01 == pytest.approx(d) for d in delays), i
        previous = t
    assert max(t - i * 0.01 for i, (t, _) in enumerate(releases)) >= 0.2
    assert run(seed=3)[0].stats == s.stats and run(seed=4)[0].stats != s.stats


def test_drop_mode_loses_messages_for_good() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(latency=0.0, loss=0.25, mode=LossMode.DROP), clock, seed=1)
    for i in range(800):
        s.submit(1, [1], 100, f"m{i}")
    delivered = _all_releases(s, clock)
    assert s.stats.dropped == s.stats.lost == 800 - len(delivered)
    assert 0.19 < s.stats.dropped / 800 < 0.31
    order = [int(m[1:]) for _, m in delivered]
    assert order == sorted(order)


def test_a_full_queue_refuses_the_send() -> None:
    clock = FakeClock(0.0)
    s = shaper(link(), clock, queue_limit=2)
    assert s.submit(1, [1], 10, "a") and s.submit(1, [1], 10, "b")
    assert not s.submit(1, [1], 10, "c") and s.stats.queue_full == 1
    assert s.submit(2, [2], 10, "d")  # another connection has room


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bandwidth": -1.0}, "`bandwidth_bytes_per_s` must be > 0, got -1.0"),
        ({"latency": -0.1}, "`latency_s` must be >= 0"),
        ({"loss": 1.0}, r"`loss` must be in \[0, 1\), got 1.0"),
        ({"loss": -0.1}, r"`loss` must be in \[0, 1\)"),
        ({"rto": 0.0}, "`retransmit_timeout_s` must be > 0"),
    ],
)
def test_bad_profile_values_are_rejected(change: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        Shaper(link(**change), 0, 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=match):
        resolve_link(link(**change))  # type: ignore[arg-type]


LOSSY_TOML = """\
kind = "link"
name = "lossy"
medium = "shared"
loss_mode = "{mode}"
[bandwidth_bytes_per_s]
value = 1e6
source = "test"
estimated = false
[latency_s]
value = 1e-3
source = "test"
estimated = false
[tx_energy_j_per_byte]
value = 1e-9
source = "test"
estimated = true
[rx_energy_j_per_byte]
value = 1e-9
source = "test"
estimated = true
[loss]
value = {loss}
source = "test"
estimated = true
"""


def test_loss_fields_load_from_a_file_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "lossy.toml"
    path.write_text(LOSSY_TOML.format(mode="drop", loss=0.05))
    profile = resolve_link(str(path))
    assert profile is not None and profile.loss.value == 0.05
    assert profile.loss_mode is LossMode.DROP and profile.retransmit_timeout_s.value == 0.2
    assert profile.to_dict()["loss_mode"] == "drop"
    path.write_text(LOSSY_TOML.format(mode="drop", loss=1.5))
    with pytest.raises(CorruptFileError, match=r"`loss`.*\[0, 1\), got 1.5"):
        load_profile(path)
    path.write_text(LOSSY_TOML.format(mode="carrier pigeon", loss=0.1))
    with pytest.raises(CorruptFileError, match="`loss_mode` must be one of retransmit, drop"):
        load_profile(path)


def test_builtin_links_load_without_loss_and_keep_their_fields() -> None:
    wifi = resolve_link("wifi")
    assert wifi is not None and wifi.loss.value == 0 and wifi.medium is Medium.SHARED
    assert "loss" not in wifi.to_dict()  # defaults are left out: fingerprints unchanged
    assert resolve_link(None) is None
    with pytest.raises(UnknownNameError, match="gigabit_ethernet"):
        resolve_link("carrier_pigeon")


def test_a_bad_link_is_one_line_before_any_node_starts(tmp_path: Path) -> None:
    from dse.cli import app

    make_bundle(tmp_path / "b", "digits-alexnet", "lop")
    out = CliRunner().invoke(app, ["run", str(tmp_path / "b"), "--local", "--link", "smoke"])
    assert out.exit_code != 0 and "unknown link profile `smoke`" in str(out.exception)
    assert "wifi" in str(out.exception)


# --------------------------------------------------------------------------- real mesh
def _pair() -> tuple[RuntimeConfig, list[str]]:
    keys = curve_keypairs(2)
    config = RuntimeConfig.create([k.public for k in keys], local=True, base_port=0)
    ports = []
    for _ in range(4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addresses = [(f"tcp://127.0.0.1:{ports[2 * r]}", f"tcp://127.0.0.1:{ports[2 * r + 1]}")
                 for r in range(2)]  # fmt: skip
    return config.with_addresses(addresses), [k.secret for k in keys]


def test_mesh_poll_releases_a_shaped_message_when_due_not_at_its_timeout() -> None:
    config, secrets = _pair()
    sender = Mesh(0, config, secrets[0], shaper=Shaper(link(latency=0.1), 0, 2))
    receiver = Mesh(1, config, secrets[1])
    try:
        start = time.monotonic()
        assert sender.send(1, [b"header", b"x" * 1000], "activation")
        assert sender.sent.messages["activation"] == 0  # held by the link, not yet sent
        sender.poll(5.0)  # returns when the message is due, not after 5 s
        waited = time.monotonic() - start
        assert 0.1 <= waited < 2.0
        assert sender.sent.messages["activation"] == 1
        got: list[Received] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = receiver.poll(0.1)
        assert [bytes(f.buffer) for f in got[0].frames] == [b"header", b"x" * 1000]
        assert got[0].peer == 0
    finally:
        sender.close()
        receiver.close()


@pytest.mark.slow  # 20-40 s: four node processes on a shared machine
def test_logits_equal_the_model_under_an_emulated_link(tmp_path: Path) -> None:
    partition = make_bundle(tmp_path / "b", "digits-alexnet", "robustdice")
    images, _ = digits_images("digits-alexnet", 16)
    lossy = replace(
        resolve_link("wifi"),  # type: ignore[type-var]
        loss=ProfileValue(0.05, "test", True),
        retransmit_timeout_s=ProfileValue(0.02, "test", True),
    )
    with LocalMesh(tmp_path / "b", PATIENT, link=lossy) as mesh:
        result = mesh.stream(images)
    reports = [life.report for life in mesh.lives]
    assert all(r is not None and r["link"]["messages"] > 0 for r in reports)
    assert [r["stats"]["absent_waits"] for r in reports if r] == [0] * 4
    downs = [c for r in reports if r for c in r["membership"] if c["event"] == "down"]
    assert not downs, "a peer was marked down"
    assert sum(r["link"]["lost"] for r in reports if r) > 0  # losses happened, resent
    assert result.lost.size == 0
    with torch.inference_mode():
        plain = model("digits-alexnet").module.eval()(images)
    torch.testing.assert_close(torch.from_numpy(result.logits), plain, atol=1e-4, rtol=0)
    expected = simulated_logits(masked_net("digits-alexnet"), partition, (), images)
    torch.testing.assert_close(torch.from_numpy(result.logits), expected, atol=1e-4, rtol=0)
