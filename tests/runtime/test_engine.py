"""The engine on a fake clock and an in-memory network: every node's engine in this process,
so waits, timeouts, zero-fill, rejoin and CDC decoding are tested without sleeping."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from runtime._simulate import simulated_logits
from runtime._transport import CLIENT, Channel, Received
from runtime._wire import Activation, DropReason, Heartbeat, Input, encode

from .cases import (
    HEARTBEAT,
    FakeNetwork,
    digits_images,
    masked_net,
    model,
    partition_of,
    programs,
    unit_sizes,
)

NAME = "digits-alexnet"


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digits_images(NAME, 12)[0]


def _network(method: str, **kwargs: int) -> FakeNetwork:
    return FakeNetwork(programs(NAME, partition_of(method, unit_sizes(NAME))), **kwargs)


@pytest.mark.parametrize("method", ["lop", "robustdice", "cdc"])
def test_no_failure_equals_the_model(method: str, images: torch.Tensor) -> None:
    net = _network(method)
    logits = net.infer(images)
    with torch.inference_mode():
        reference = model(NAME).module.eval()(images)
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)
    assert all(e.stats.absent_waits == 0 for e in net.engines)


@pytest.mark.parametrize("method", ["lop", "robustdice", "cdc"])
@pytest.mark.parametrize("down", [{1}, {0, 2}])
def test_a_stopped_node_is_marked_down_and_zero_filled_as_simulated(
    method: str, down: set[int], images: torch.Tensor
) -> None:
    net = _network(method)
    net.run(0.1)
    net.stopped |= down
    net.run(HEARTBEAT.timeout + 2 * HEARTBEAT.interval)
    survivors = [e for r, e in enumerate(net.engines) if r not in down]
    assert all(e.membership.down() == frozenset(down) for e in survivors)
    logits = net.infer(images)
    partition = net.engines[0].program.partition
    expected = simulated_logits(masked_net(NAME), partition, down, images)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    # a peer known down costs no wait: nothing timed out
    assert all(e.stats.absent_waits == 0 for e in survivors)


def test_detection_takes_the_timeout_and_a_node_rejoins(images: torch.Tensor) -> None:
    net = _network("lop")
    net.run(0.1)
    net.stopped.add(2)
    stopped_at = net.clock.now
    net.run(1.0)
    change = next(c for c in net.engines[0].membership.history if c.rank == 2)
    assert HEARTBEAT.timeout <= change.at - stopped_at <= HEARTBEAT.detection_bound + 0.02
    net.stopped.discard(2)
    net.run(0.2)
    assert all(e.membership.down() == frozenset() for e in net.engines)
    logits = net.infer(images)
    with torch.inference_mode():
        reference = model(NAME).module.eval()(images)
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


def test_a_peer_silent_for_one_image_is_waited_for_once(images: torch.Tensor) -> None:
    """Data lost in flight (the peer stays a member): one timeout, then zero for the rest
    of that image, and the next image is whole again."""
    net = _network("lop", in_flight=1)
    net.run(0.1)
    original = net.transports[1].send
    net.transports[1].send = lambda peer, frames, kind: True  # node 1's data vanishes
    start = net.clock.now
    net.infer(images[:1])
    assert net.clock.now - start >= HEARTBEAT.timeout
    assert net.engines[0].stats.absent_waits == 1  # one wait for image 0, not one per unit
    net.transports[1].send = original
    logits = net.infer(images[1:3])
    with torch.inference_mode():
        reference = model(NAME).module.eval()(images[1:3])
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


def test_late_duplicate_and_spoofed_data_is_dropped(images: torch.Tensor) -> None:
    net = _network("lop")
    net.infer(images[:2])
    engine = net.engines[0]
    before = engine.stats.drops.to_dict()
    late = Activation(0, 0, 0, 1, np.zeros((1, 8, 8, 8), dtype=np.float32))
    engine._handle(Received(Channel.DATA, encode(late), 1))  # image 0 is finished
    spoofed = Activation(5, 0, 0, 2, np.zeros((1, 8, 8, 8), dtype=np.float32))
    engine._handle(Received(Channel.DATA, encode(spoofed), 1))  # key of 1 claims rank 2
    fake_input = Input(9, 0, images[:1].numpy())
    engine._handle(Received(Channel.DATA, encode(fake_input), 3))  # only the client inputs
    beat = Heartbeat(3, 1, 0, 0.0, 10**6)
    engine._handle(Received(Channel.HEARTBEAT, encode(beat), 1))  # on 1's channel
    drops = engine.stats.drops
    assert drops[DropReason.LATE] == before.get("late", 0) + 1
    assert drops[DropReason.UNAUTHENTICATED] == before.get("unauthenticated", 0) + 3


def test_wrong_shapes_and_garbage_frames_are_counted_not_fatal(images: torch.Tensor) -> None:
    net = _network("robustdice")
    engine = net.engines[0]
    wrong = Activation(3, 0, 0, 1, np.zeros((1, 5, 8, 8), dtype=np.float32))
    engine._handle(Received(Channel.DATA, encode(wrong), 1))
    assert engine.stats.drops[DropReason.BAD_SHAPE] == 1
    rng = random.Random(0)
    valid = [bytes(memoryview(f)) for f in encode(wrong)]
    for _ in range(3000):
        frames = [bytearray(f) for f in valid]
        for _ in range(rng.randint(1, 4)):
            frame = frames[rng.randrange(len(frames))]
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        if rng.random() < 0.2:
            frames = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))]
        engine._handle(
            Received(Channel.DATA, [bytes(f) for f in frames], rng.choice([1, 2, None]))
        )
    logits = net.infer(images[:2])  # still serving
    assert logits.shape == (2, 10)


def test_a_stopped_node_skips_what_others_answered(images: torch.Tensor) -> None:
    net = _network("replication", in_flight=2)
    net.run(0.1)
    net.stopped.add(3)
    net.run(0.5)
    net.infer(images[:6])
    net.stopped.discard(3)
    # a stopped node's queue holds the inputs of images the others answered meanwhile; the
    # newest input's watermark (6) tells it to skip them all
    for image_id, watermark in [(i, 0) for i in range(6)] + [(6, 6)]:
        frames = encode(Input(image_id, watermark, images[:1].numpy()))
        net.transports[3].inbox.append(
            Received(Channel.DATA, [bytes(memoryview(f)) for f in frames], CLIENT)
        )
    net.run(0.05)
    stats = net.engines[3].stats
    assert stats.images_skipped == 6
    # the one new image: computed, or left to the others while they still count node 3 down
    assert stats.images_started + stats.images_unadmitted == 1


def test_a_node_back_from_a_freeze_leaves_images_to_the_others_until_readmitted(
    images: torch.Tensor,
) -> None:
    """Its peers ignore it until they hear it again; an image it computed meanwhile would
    see every peer absent, so it answers nothing until its peers count it in."""
    net = _network("lop")
    net.run(0.1)
    net.frozen.add(2)
    net.run(HEARTBEAT.timeout + 3 * HEARTBEAT.interval)
    assert all(2 in e.membership.down() for r, e in enumerate(net.engines) if r != 2)
    net.frozen.discard(2)
    net.infer(images[:6])
    with torch.inference_mode():
        whole = model(NAME).module.eval()(images[:6])
    from_2 = [(i, logits) for sender, i, logits in net.answers if sender == 2]
    for i, logits in from_2:  # never a lone answer: whole images only
        torch.testing.assert_close(logits, whole[i : i + 1], atol=1e-4, rtol=0)
    assert net.engines[2].stats.images_unadmitted >= 1
