"""The runtime's message codec: round trips, zero copy, every malformation, replay, a fuzz."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from robustdice_core._errors import InvalidParameterError, RobustDiceError
from runtime import _wire
from runtime._wire import (
    Activation,
    ActivationDedup,
    DropCounter,
    DropReason,
    Heartbeat,
    Join,
    Leave,
    MalformedMessage,
    MessageKind,
    ReplayGuard,
    Result,
    WireLimits,
    as_tensor,
    decode,
    encode,
)

LIMITS = WireLimits(num_devices=4)
PREFIX = _wire._PREFIX.pack(_wire.MAGIC, _wire.VERSION, MessageKind.ACTIVATION)


def activation(indices: bool = True, dtype: str = "float32") -> Activation:
    data = np.arange(2 * 3 * 4 * 5, dtype=dtype).reshape(2, 3, 4, 5)
    idx = np.array([0, 5, 9], dtype=np.uint32) if indices else None
    return Activation(image_id=2**40 + 7, unit=3, epoch=2, sender=1, data=data, indices=idx)


def heartbeat(**changes: float) -> Heartbeat:
    fields = dict(sender=2, incarnation=10, epoch=3, timestamp=12.5, sequence=41)
    fields.update(changes)
    return Heartbeat(**fields)  # type: ignore[arg-type]


def act_frames(payload: bytes | None = None, tail: bytes | None = None, **fields: int) -> list:
    """An ACTIVATION's frames with header fields overridden (for malformations)."""
    values = dict(
        image_id=1, unit=0, epoch=0, sender=0, dtype=1, ndim=2, mode=1, n_idx=2, nbytes=16
    )
    values.update(fields)
    fixed = _wire._ACT.pack(*values.values())
    if tail is None:
        tail = struct.pack("<2Q", 2, 2) + struct.pack("<2I", 3, 8)
    return [PREFIX + fixed + tail, bytes(16) if payload is None else payload]


def reason_of(frames: Any, limits: WireLimits = LIMITS) -> DropReason:
    with pytest.raises(MalformedMessage) as info:
        decode(frames, limits)
    return info.value.reason


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int8", "uint8", "int64"])
@pytest.mark.parametrize("indices", [True, False])
def test_activation_round_trip(dtype: str, indices: bool) -> None:
    msg = activation(indices, dtype)
    frames = encode(msg)
    assert len(frames) == 2 and isinstance(frames[1], memoryview)
    out = decode(frames, LIMITS)
    assert isinstance(out, Activation) and out.kind is MessageKind.ACTIVATION
    assert (out.image_id, out.unit, out.epoch, out.sender) == (2**40 + 7, 3, 2, 1)
    np.testing.assert_array_equal(out.data, msg.data)
    assert out.data.dtype == msg.data.dtype
    if indices:
        assert out.indices is not None
        np.testing.assert_array_equal(out.indices, [0, 5, 9])
    else:
        assert out.indices is None


def test_result_round_trip_and_empty_tensor() -> None:
    logits = np.linspace(-1, 1, 20, dtype=np.float32).reshape(2, 10)
    out = decode(encode(Result(image_id=9, epoch=1, sender=3, data=logits)), LIMITS)
    assert isinstance(out, Result) and (out.image_id, out.epoch, out.sender) == (9, 1, 3)
    np.testing.assert_array_equal(out.data, logits)
    empty = decode(encode(Result(0, 0, 0, np.zeros((0, 10), np.float16))), LIMITS)
    assert isinstance(empty, Result) and empty.data.shape == (0, 10)


@pytest.mark.parametrize(
    "msg",
    [heartbeat(), heartbeat(timestamp=-3.0, sequence=2**64 - 1), Join(1, 5, 0, 1.0),
     Leave(3, 2**64 - 1, 9, 0.0)],
)  # fmt: skip
def test_control_round_trip(msg: Heartbeat | Join | Leave) -> None:
    frames = encode(msg)
    assert len(frames) == 1
    assert decode(frames, LIMITS) == msg
    assert type(msg).from_dict(msg.to_dict()) == msg


def test_big_endian_and_non_contiguous_data_are_normalised() -> None:
    data = np.arange(12, dtype=">f4").reshape(3, 4).T  # big-endian, not C-contiguous
    out = decode(encode(Result(1, 0, 0, data)), LIMITS)
    np.testing.assert_array_equal(out.data, data)  # type: ignore[union-attr]


def test_decoded_array_shares_memory_with_the_frame() -> None:
    msg = activation()
    out = decode(encode(msg), LIMITS)
    assert np.shares_memory(out.data, msg.data)  # type: ignore[union-attr]
    header, payload = encode(msg)
    frame = bytearray(payload)
    out = decode([header, frame], LIMITS)
    frame[:4] = struct.pack("<f", 123.0)
    assert out.data.flat[0] == 123.0  # type: ignore[union-attr]


def test_as_tensor_shares_memory() -> None:
    out = decode(encode(activation()), LIMITS)
    tensor = as_tensor(out.data)  # type: ignore[union-attr]
    assert tensor.data_ptr() == out.data.ctypes.data  # type: ignore[union-attr]
    assert tensor.shape == (2, 3, 4, 5)


# ----------------------------------------------------------------------------- encode errors
@pytest.mark.parametrize(
    "build",
    [
        lambda: Activation(0, 0, 0, 0, np.zeros((2, 2), np.complex64)),
        lambda: Activation(0, 0, 0, 0, np.zeros((2, 2)), np.array([1, 0])),
        lambda: Activation(0, 0, 0, 0, np.zeros((2, 3)), np.array([0, 1])),
        lambda: Activation(0, 0, 0, 0, np.zeros((2, 2)), np.array([0.0, 1.0])),
        lambda: Activation(0, 0, 0, 0, np.zeros((1,) * 9)),
        lambda: Activation(0, 0, 0, 0, [1.0]),  # type: ignore[arg-type]
        lambda: Activation(-1, 0, 0, 0, np.zeros(2)),
        lambda: Heartbeat(2**16, 0, 0, 0.0),
        lambda: Heartbeat(0, 0, 0, float("nan")),
    ],
)
def test_invalid_messages_are_refused_when_built_or_encoded(build: Callable[[], Any]) -> None:
    with pytest.raises(InvalidParameterError):
        encode(build())


def test_limits_validate_and_round_trip() -> None:
    limits = WireLimits(8, max_payload_bytes=1024)
    assert WireLimits.from_dict(limits.to_dict()) == limits
    for bad in ({"num_devices": 0}, {"num_devices": 2, "nope": 1}, {"num_devices": "x"}):
        with pytest.raises(InvalidParameterError):
            WireLimits.from_dict(bad)


# ----------------------------------------------------------------------------- malformations
HB = bytes(encode(heartbeat())[0])
BIG = WireLimits(4, max_header_bytes=64, max_payload_bytes=32)
MALFORMED: dict[str, tuple[Any, DropReason]] = {
    "no frames": ([], DropReason.FRAME_COUNT),
    "three frames": ([HB, b"", b""], DropReason.FRAME_COUNT),
    "heartbeat with payload": ([HB, b"x"], DropReason.FRAME_COUNT),
    "activation without payload": (act_frames()[:1], DropReason.FRAME_COUNT),
    "not a buffer": ([12345], DropReason.FRAME_TYPE),
    "none frame": ([None], DropReason.FRAME_TYPE),
    "not a sequence": (None, DropReason.FRAME_TYPE),
    "empty header": ([b""], DropReason.HEADER_TRUNCATED),
    "short prefix": ([b"RDCE\x01"], DropReason.HEADER_TRUNCATED),
    "short activation": ([PREFIX + b"\0" * 10, b""], DropReason.HEADER_TRUNCATED),
    "huge header": ([HB + bytes(LIMITS.max_header_bytes)], DropReason.HEADER_TOO_LARGE),
    "bad magic": ([b"XDCE" + HB[4:]], DropReason.BAD_MAGIC),
    "bad version": ([HB[:4] + b"\x02" + HB[5:]], DropReason.BAD_VERSION),
    "kind zero": ([HB[:5] + b"\x00" + HB[6:]], DropReason.UNKNOWN_KIND),
    "kind 99": ([HB[:5] + b"\x63" + HB[6:]], DropReason.UNKNOWN_KIND),
    "heartbeat + byte": ([HB + b"\0"], DropReason.HEADER_LENGTH),
    "heartbeat - byte": ([HB[:-1]], DropReason.HEADER_LENGTH),
    "join as heartbeat": ([HB[:5] + b"\x04" + HB[6:]], DropReason.HEADER_LENGTH),
    "activation tail + byte": (act_frames(tail=bytes(33)), DropReason.HEADER_LENGTH),
    "activation tail - byte": (act_frames(tail=bytes(31)), DropReason.HEADER_LENGTH),
    "heartbeat rank": ([encode(heartbeat(sender=4))[0]], DropReason.BAD_RANK),
    "activation rank": (act_frames(sender=65535), DropReason.BAD_RANK),
    "nan timestamp": ([HB[:-16] + struct.pack("<dQ", np.nan, 0)],
                      DropReason.BAD_FIELD),
    "inf timestamp": ([bytes(encode(Join(0, 0, 0, 0.0))[0])[:-8] + struct.pack("<d", np.inf)],
                      DropReason.BAD_FIELD),
    "dtype 0": (act_frames(dtype=0), DropReason.BAD_DTYPE),
    "dtype 200": (act_frames(dtype=200), DropReason.BAD_DTYPE),
    "too many dims": (act_frames(ndim=9, n_idx=0, mode=0, tail=bytes(72)), DropReason.BAD_SHAPE),
    "shape vs bytes": (act_frames(nbytes=20, payload=bytes(20)), DropReason.BAD_SHAPE),
    "huge dims": (act_frames(tail=struct.pack("<2Q2I", 2**63, 2**63, 3, 8)),
                  DropReason.BAD_SHAPE),
    "index mode 2": (act_frames(mode=2), DropReason.BAD_INDICES),
    "partition mode with indices": (act_frames(mode=0), DropReason.BAD_INDICES),
    "indices vs channels": (act_frames(n_idx=1, tail=struct.pack("<2QI", 2, 2, 3)),
                            DropReason.BAD_INDICES),
    "unsorted indices": (act_frames(tail=struct.pack("<2Q2I", 2, 2, 8, 3)),
                         DropReason.BAD_INDICES),
    "repeated indices": (act_frames(tail=struct.pack("<2Q2I", 2, 2, 3, 3)),
                         DropReason.BAD_INDICES),
    "indices on a vector": (act_frames(ndim=1, n_idx=1, nbytes=4, payload=bytes(4),
                                       tail=struct.pack("<QI", 1, 0)), DropReason.BAD_INDICES),
    "payload short": (act_frames(payload=bytes(15)), DropReason.PAYLOAD_LENGTH),
    "payload long": (act_frames(payload=bytes(17)), DropReason.PAYLOAD_LENGTH),
    "payload over limit": (act_frames(payload=bytes(LIMITS.max_payload_bytes + 1)),
                           DropReason.PAYLOAD_TOO_LARGE),
    "declared over limit": (act_frames(nbytes=2**40), DropReason.PAYLOAD_TOO_LARGE),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformation_has_its_reason(name: str) -> None:
    frames, reason = MALFORMED[name]
    assert decode(act_frames(), LIMITS)  # the unmodified template is valid
    assert reason_of(frames) is reason


def test_limits_are_configurable() -> None:
    assert reason_of(act_frames(), BIG) is DropReason.HEADER_TOO_LARGE
    small = WireLimits(4, max_payload_bytes=8)
    assert reason_of(act_frames(), small) is DropReason.PAYLOAD_TOO_LARGE
    assert reason_of(encode(heartbeat(sender=1))[:1], WireLimits(1)) is DropReason.BAD_RANK


def test_malformed_message_is_a_project_error_and_counts() -> None:
    err = MalformedMessage(DropReason.BAD_MAGIC, "x")
    assert isinstance(err, RobustDiceError) and "bad_magic" in str(err)
    counter = DropCounter()
    for frames, _ in MALFORMED.values():
        try:
            decode(frames, LIMITS)
        except MalformedMessage as exc:
            counter.add(exc.reason)
    assert counter.total == len(MALFORMED)
    assert counter[DropReason.BAD_INDICES] == 6
    assert set(counter.to_dict()) == {r for _, r in MALFORMED.values()} and all(
        isinstance(k, str) for k in counter.to_dict()
    )


# ----------------------------------------------------------------------------- replay
def test_replay_guard_accepts_only_newer_heartbeats() -> None:
    guard = ReplayGuard()
    assert guard.accept(heartbeat(sequence=5))
    assert not guard.accept(heartbeat(sequence=5))  # replay
    assert not guard.accept(heartbeat(sequence=4))  # stale
    assert guard.accept(heartbeat(sequence=6))
    assert guard.accept(heartbeat(sender=1, sequence=0))  # per sender
    assert guard.accept(heartbeat(incarnation=11, sequence=0))  # restart
    assert not guard.accept(heartbeat(incarnation=10, sequence=99))  # previous life
    assert guard.incarnation(2) == 11 and guard.incarnation(3) is None


def test_activation_dedup() -> None:
    dedup = ActivationDedup(capacity=3)
    msg = activation()
    assert dedup.accept(msg) and not dedup.accept(decode(encode(msg), LIMITS))  # type: ignore
    other_epoch = Activation(msg.image_id, msg.unit, 3, msg.sender, msg.data)
    assert dedup.accept(other_epoch)
    result = Result(msg.image_id, msg.epoch, msg.sender, msg.data)
    assert dedup.accept(result) and not dedup.accept(result)
    assert dedup.accept(Activation(1, 0, 0, 0, msg.data))  # evicts the oldest
    assert dedup.accept(msg)
    dedup.forget_image(msg.image_id)
    assert dedup.accept(other_epoch)
    with pytest.raises(InvalidParameterError):
        ActivationDedup(capacity=0)


# ----------------------------------------------------------------------------- fuzz
def _seeds() -> list[list[bytes]]:
    msgs: list[_wire.Message] = [
        activation(),
        activation(False, "int8"),
        heartbeat(),
        Join(0, 1, 2, 3.0),
        Leave(1, 0, 0, 0.0),
        Result(4, 0, 3, np.ones((1, 10), np.float32)),
        Activation(0, 1, 0, 0, np.zeros((0, 4), np.float16)),
    ]
    return [[bytes(f) for f in encode(m)] for m in msgs]


def _mutate(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    i = rng.randrange(len(frames)) if rng.random() < 0.3 else 0
    data = bytearray(frames[i])
    op = rng.randrange(7)
    if op == 0 and data:  # bit flips
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncation
        del data[rng.randrange(len(data) + 1) :]
    elif op == 2:  # extension
        data += rng.randbytes(rng.choice((1, 4, 8, rng.randrange(64))))
    elif op == 3 and len(data) > 6:  # header field edit with an interesting value
        width = rng.choice((1, 2, 4, 8))
        pos = rng.randrange(6, max(7, len(data) - width + 1))
        value = rng.choice((0, 1, 2, 3, 8, 9, 255, 2**width * 8 - 1, rng.getrandbits(width * 8)))
        data[pos : pos + width] = (value % 2 ** (width * 8)).to_bytes(width, "little")
    elif op == 4:  # frame count
        return frames[:-1] if rng.random() < 0.5 else [*frames, rng.randbytes(4)]
    elif op == 5:  # random bytes behind a valid prefix
        data = bytearray(PREFIX[:5] + bytes([rng.randrange(7)]) + rng.randbytes(rng.randrange(80)))
    else:  # random frames
        return [rng.randbytes(rng.randrange(40)) for _ in range(rng.randint(0, 3))]
    frames[i] = bytes(data)
    return frames


def test_fuzz_decode_returns_a_message_or_raises_malformed() -> None:
    rng = random.Random(20261127)
    seeds = _seeds()
    counts = {"valid": 0, "malformed": 0}
    reasons: set[DropReason] = set()
    start = time.perf_counter()
    for _ in range(100_000):
        frames = _mutate(rng, rng.choice(seeds))
        try:
            msg = decode(frames, LIMITS)
        except MalformedMessage as err:
            counts["malformed"] += 1
            reasons.add(err.reason)
            continue
        counts["valid"] += 1
        again = decode(encode(msg), LIMITS)  # whatever decodes also re-encodes
        assert type(again) is type(msg) and again.kind is msg.kind
        if isinstance(msg, (Activation, Result)):
            assert msg.data.nbytes <= LIMITS.max_payload_bytes and msg.sender < 4
    elapsed = time.perf_counter() - start
    assert counts["valid"] > 1000 and counts["malformed"] > 50_000, counts
    assert len(reasons) >= 12, reasons  # the mutations reach deep into the decoder
    assert elapsed < 30, elapsed
