"""The runtime's message codec (DESIGN 3.8): fixed binary headers, raw zero-copy payloads.

Every message is a list of ZeroMQ frames. Frame 0 is a header: a 6-byte prefix
``magic(4) version(1) kind(1)``, then a fixed little-endian ``struct`` per kind, then (tensor
kinds only) a variable tail whose length the fixed part declares exactly. Tensor kinds
(ACTIVATION, RESULT) carry a second frame: the raw C-order little-endian array bytes, sent as a
``memoryview`` so pyzmq can send it with ``copy=False`` and decoded with ``np.frombuffer``.

==========  ======  ===================================================================
kind        frames  fixed fields (after the prefix)
==========  ======  ===================================================================
ACTIVATION  2       image_id Q, unit I, epoch Q, sender H, dtype B, ndim B, index_mode B,
                    pad, n_indices I, payload_len Q; tail: ndim x dim Q, n_indices x idx I
PREACT      2       as ACTIVATION (CDC: a layer's output before its local ops, for decoding)
RESULT      2       image_id Q, epoch Q, sender H, dtype B, ndim B, payload_len Q;
                    tail: ndim x dim Q
INPUT       2       as RESULT, with the client's watermark in place of the epoch and
                    sender 0: the image, and the oldest image the client still waits for
HEARTBEAT   1       sender H, incarnation Q, epoch Q, sequence Q, timestamp d, down_mask Q
JOIN/LEAVE  1       sender H, incarnation Q, epoch Q, timestamp d
==========  ======  ===================================================================

Nothing is pickled or parsed as text. :func:`decode` checks every bound in `WireLimits` before
it allocates or slices and raises `MalformedMessage` with a `DropReason` for anything wrong, so
a node drops and counts bad input and never crashes on it. Replay and duplicate protection are
separate (`ReplayGuard`, `ActivationDedup`): decoding is stateless.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any, NoReturn, Union

import numpy as np

from robustdice_core._errors import InvalidParameterError, RobustDiceError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Activation",
    "ActivationDedup",
    "DropCounter",
    "DropReason",
    "Heartbeat",
    "Input",
    "Join",
    "Leave",
    "MalformedMessage",
    "Message",
    "MessageKind",
    "ReplayGuard",
    "Result",
    "WireLimits",
    "decode",
    "encode",
    "as_tensor",
]

MAGIC = b"RDCE"
VERSION = 1
MAX_NDIM = 8
_U16, _U32, _U64 = 2**16 - 1, 2**32 - 1, 2**64 - 1

Frame = Any  # bytes, bytearray, memoryview, zmq.Frame: anything with the buffer protocol


class MessageKind(IntEnum):
    """What a message is; the value is its one-byte code on the wire."""

    ACTIVATION = 1
    HEARTBEAT = 2
    RESULT = 3
    JOIN = 4
    LEAVE = 5
    PREACT = 6
    INPUT = 7


class DropReason(str, Enum):
    """Why a message was dropped; a node counts drops per reason (`DropCounter`)."""

    FRAME_COUNT = "frame_count"
    FRAME_TYPE = "frame_type"
    HEADER_TRUNCATED = "header_truncated"
    HEADER_TOO_LARGE = "header_too_large"
    HEADER_LENGTH = "header_length"
    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_RANK = "bad_rank"
    BAD_DTYPE = "bad_dtype"
    BAD_SHAPE = "bad_shape"
    BAD_INDICES = "bad_indices"
    BAD_FIELD = "bad_field"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PAYLOAD_LENGTH = "payload_length"
    REPLAYED = "replayed"
    DUPLICATE = "duplicate"
    OUT_OF_WINDOW = "out_of_window"
    LATE = "late"  # data for an image this node has finished or skipped
    UNAUTHENTICATED = "unauthenticated"


class MalformedMessage(RobustDiceError):
    """Frames that do not decode to a valid message; ``reason`` says why."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"malformed message ({reason.value}): {detail}")
        self.reason = reason


class DropCounter:
    """Dropped messages counted per `DropReason` (a node's health report)."""

    def __init__(self) -> None:
        self._counts: Counter[DropReason] = Counter()

    def add(self, reason: DropReason) -> None:
        self._counts[reason] += 1

    def __getitem__(self, reason: DropReason) -> int:
        return self._counts[reason]

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def to_dict(self) -> dict[str, int]:
        return {r.value: n for r, n in sorted(self._counts.items(), key=lambda kv: kv[0].value)}


# ----------------------------------------------------------------------------- dtypes
_DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f2"),
    3: np.dtype("<f8"),
    4: np.dtype("i1"),
    5: np.dtype("u1"),
    6: np.dtype("<i4"),
    7: np.dtype("<i8"),
    8: np.dtype("?"),
}
_CODE_OF: dict[np.dtype, int] = {dt: code for code, dt in _DTYPE_CODES.items()}


def _dtype_code(dtype: np.dtype) -> int:
    code = _CODE_OF.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if code is None:
        names = ", ".join(str(d) for d in _DTYPE_CODES.values())
        raise InvalidParameterError(
            f"dtype {dtype} cannot travel on the wire; use one of {names}."
        )
    return code


# ----------------------------------------------------------------------------- limits
@dataclass(frozen=True)
class WireLimits:
    """Bounds `decode` enforces; ``num_devices`` bounds the sender rank."""

    num_devices: int
    max_header_bytes: int = 64 * 1024
    max_payload_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 1 <= self.num_devices <= _U16:
            raise InvalidParameterError(
                f"`num_devices` must be in [1, {_U16}], got {self.num_devices}."
            )
        if self.max_header_bytes < 64:
            raise InvalidParameterError(
                f"`max_header_bytes` must be at least 64, got {self.max_header_bytes}."
            )
        if self.max_payload_bytes < 0:
            raise InvalidParameterError(
                f"`max_payload_bytes` must be non-negative, got {self.max_payload_bytes}."
            )

    def to_dict(self) -> dict[str, int]:
        return {
            "num_devices": self.num_devices,
            "max_header_bytes": self.max_header_bytes,
            "max_payload_bytes": self.max_payload_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WireLimits:
        unknown = set(data) - {"num_devices", "max_header_bytes", "max_payload_bytes"}
        if unknown:
            raise InvalidParameterError(f"unknown wire limit keys: {sorted(unknown)}.")
        try:
            return cls(**{k: int(v) for k, v in data.items()})
        except (TypeError, ValueError) as err:
            raise InvalidParameterError(f"wire limits are malformed: {err}") from err


# ----------------------------------------------------------------------------- messages
def _check_uint(name: str, value: int, bound: int) -> None:
    if not 0 <= value <= bound:
        raise InvalidParameterError(f"`{name}` must be in [0, {bound}], got {value}.")


@dataclass(frozen=True, eq=False)
class Activation:
    """One sender's partial output of one unit for one image (frames: header + buffer).

    ``data`` holds ``k`` neurons: with ``indices`` (sorted unique ``uint32``, length ``k``,
    neurons along axis 1) they are named; with ``None`` they are what the partition says
    ``sender`` sends this receiver at ``unit``, on the unit's own neuron axis. ``preact``
    marks a CDC pre-activation output (kind PREACT) rather than a sync output.
    """

    image_id: int
    unit: int
    epoch: int
    sender: int
    data: np.ndarray
    indices: np.ndarray | None = None
    preact: bool = False

    def __post_init__(self) -> None:
        _check_uint("image_id", self.image_id, _U64)
        _check_uint("unit", self.unit, _U32)
        _check_uint("epoch", self.epoch, _U64)
        _check_uint("sender", self.sender, _U16)

    @property
    def kind(self) -> MessageKind:
        return MessageKind.PREACT if self.preact else MessageKind.ACTIVATION


@dataclass(frozen=True, eq=False)
class Result:
    """The logits a node computed for one image (frames: header + buffer)."""

    image_id: int
    epoch: int
    sender: int
    data: np.ndarray

    def __post_init__(self) -> None:
        _check_uint("image_id", self.image_id, _U64)
        _check_uint("epoch", self.epoch, _U64)
        _check_uint("sender", self.sender, _U16)

    @property
    def kind(self) -> MessageKind:
        return MessageKind.RESULT


@dataclass(frozen=True, eq=False)
class Input:
    """An image (batch) for every node, from the client; ``watermark``: the oldest image the
    client has no answer for yet (a node drops older work: someone answered it)."""

    image_id: int
    watermark: int
    data: np.ndarray

    def __post_init__(self) -> None:
        _check_uint("image_id", self.image_id, _U64)
        _check_uint("watermark", self.watermark, _U64)

    @property
    def kind(self) -> MessageKind:
        return MessageKind.INPUT


@dataclass(frozen=True)
class _Control:
    sender: int
    incarnation: int
    epoch: int
    timestamp: float

    def __post_init__(self) -> None:
        _check_uint("sender", self.sender, _U16)
        _check_uint("incarnation", self.incarnation, _U64)
        _check_uint("epoch", self.epoch, _U64)
        if not math.isfinite(self.timestamp):
            raise InvalidParameterError(f"`timestamp` must be finite, got {self.timestamp}.")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def _from_dict(cls, data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        if set(data) != set(keys):
            raise InvalidParameterError(
                f"{cls.__name__} needs exactly the keys {list(keys)}, got {sorted(data)}."
            )
        return {k: float(data[k]) if k == "timestamp" else int(data[k]) for k in keys}


@dataclass(frozen=True)
class Heartbeat(_Control):
    """A node's "I am alive"; ``sequence`` grows by one per heartbeat within an incarnation.

    ``incarnation`` grows across restarts of the sender (e.g. its start time in ns), so a
    restarted node's heartbeats beat those of its previous life. ``timestamp`` is the sender's
    clock, informational only: detection uses the receiver's clock. ``down_mask``: the
    sender's view, bit r set when it counts rank r down (ranks >= 64 are not reported), so
    the client can tell when the mesh agrees on a failure.
    """

    sequence: int = 0
    down_mask: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_uint("sequence", self.sequence, _U64)
        _check_uint("down_mask", self.down_mask, _U64)

    def down(self) -> frozenset[int]:
        return frozenset(r for r in range(64) if self.down_mask >> r & 1)

    @property
    def kind(self) -> MessageKind:
        return MessageKind.HEARTBEAT

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heartbeat:
        keys = ("sender", "incarnation", "epoch", "timestamp", "sequence", "down_mask")
        return cls(**cls._from_dict(data, keys))


@dataclass(frozen=True)
class Join(_Control):
    """A node (re)starting announces itself before its first heartbeat."""

    @property
    def kind(self) -> MessageKind:
        return MessageKind.JOIN

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Join:
        return cls(**cls._from_dict(data, ("sender", "incarnation", "epoch", "timestamp")))


@dataclass(frozen=True)
class Leave(_Control):
    """A node shutting down cleanly: peers mark it down at once instead of after a timeout."""

    @property
    def kind(self) -> MessageKind:
        return MessageKind.LEAVE

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Leave:
        return cls(**cls._from_dict(data, ("sender", "incarnation", "epoch", "timestamp")))


Message = Union[Activation, Result, Input, Heartbeat, Join, Leave]

# ----------------------------------------------------------------------------- layout
_PREFIX = struct.Struct("<4sBB")
_ACT = struct.Struct("<QIQHBBBxIQ")
_RES = struct.Struct("<QQHBBQ")
_HB = struct.Struct("<HQQQdQ")
_CTL = struct.Struct("<HQQd")
_INDEX_PARTITION, _INDEX_EXPLICIT = 0, 1
_TENSOR_KINDS = frozenset(
    {MessageKind.ACTIVATION, MessageKind.PREACT, MessageKind.RESULT, MessageKind.INPUT}
)
_ACTIVATION_KINDS = frozenset({MessageKind.ACTIVATION, MessageKind.PREACT})
_CONTROL_TYPES: dict[MessageKind, type[Join] | type[Leave]] = {
    MessageKind.JOIN: Join,
    MessageKind.LEAVE: Leave,
}


# ----------------------------------------------------------------------------- encode
def encode(msg: Message) -> list[bytes | memoryview]:
    """Frames for ``msg``; a tensor's buffer frame is a flat byte view of its data (no copy
    when the array is C-contiguous and little-endian)."""
    prefix = _PREFIX.pack(MAGIC, VERSION, int(msg.kind))
    if isinstance(msg, Heartbeat):
        fields = (msg.sender, msg.incarnation, msg.epoch, msg.sequence, msg.timestamp)
        return [prefix + _HB.pack(*fields, msg.down_mask)]
    if isinstance(msg, (Join, Leave)):
        return [prefix + _CTL.pack(msg.sender, msg.incarnation, msg.epoch, msg.timestamp)]
    data = _wire_array(msg.data)
    code, dims = _dtype_code(data.dtype), struct.pack(f"<{data.ndim}Q", *data.shape)
    if isinstance(msg, (Result, Input)):
        second, sender = (msg.epoch, msg.sender) if isinstance(msg, Result) else (msg.watermark, 0)
        fixed = _RES.pack(msg.image_id, second, sender, code, data.ndim, data.nbytes)
        return [prefix + fixed + dims, _flat_view(data)]
    indices = b"" if msg.indices is None else _wire_indices(msg.indices, data)
    mode = _INDEX_PARTITION if msg.indices is None else _INDEX_EXPLICIT
    fixed = _ACT.pack(
        msg.image_id, msg.unit, msg.epoch, msg.sender, code, data.ndim, mode,
        len(indices) // 4, data.nbytes,
    )  # fmt: skip
    return [prefix + fixed + dims + indices, _flat_view(data)]


def _wire_array(data: np.ndarray) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise InvalidParameterError(f"`data` must be a numpy array, got {type(data).__name__}.")
    if data.ndim > MAX_NDIM:
        raise InvalidParameterError(f"`data` has {data.ndim} dims; at most {MAX_NDIM} travel.")
    _dtype_code(data.dtype)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return np.ascontiguousarray(data)


def _wire_indices(indices: np.ndarray, data: np.ndarray) -> bytes:
    idx = np.asarray(indices)
    if idx.ndim != 1 or data.ndim < 2 or idx.size != data.shape[1]:
        raise InvalidParameterError(
            f"`indices` must be 1-d with one entry per channel of `data` (axis 1); got "
            f"{idx.shape} for data of shape {data.shape}."
        )
    if not np.issubdtype(idx.dtype, np.integer):
        raise InvalidParameterError(f"`indices` must be integers, got dtype {idx.dtype}.")
    if idx.size and (idx.min() < 0 or idx.max() > _U32 or np.any(np.diff(idx) <= 0)):
        raise InvalidParameterError("`indices` must be strictly increasing uint32 values.")
    return idx.astype("<u4").tobytes()


def _flat_view(data: np.ndarray) -> memoryview:
    if data.size == 0:
        return memoryview(b"")
    return data.data.cast("B")


# ----------------------------------------------------------------------------- decode
def decode(frames: Sequence[Frame], limits: WireLimits) -> Message:
    """The message in ``frames``; raises `MalformedMessage` (with a reason) for anything else.

    Tensor data is a read-only view of the buffer frame (zero copy); keep the frame alive as
    long as the array.
    """
    views = _views(frames)
    header = views[0]
    if len(header) > limits.max_header_bytes:
        _fail(DropReason.HEADER_TOO_LARGE, f"{len(header)} > {limits.max_header_bytes} bytes")
    if len(header) < _PREFIX.size:
        _fail(DropReason.HEADER_TRUNCATED, f"{len(header)} bytes, no prefix")
    magic, version, code = _PREFIX.unpack_from(header)
    if magic != MAGIC:
        _fail(DropReason.BAD_MAGIC, f"magic {magic!r}")
    if version != VERSION:
        _fail(DropReason.BAD_VERSION, f"version {version}, this node speaks {VERSION}")
    if code not in MessageKind._value2member_map_:
        _fail(DropReason.UNKNOWN_KIND, f"kind code {code}")
    kind = MessageKind(code)
    tensor = kind in _TENSOR_KINDS
    if len(views) != (2 if tensor else 1):
        _fail(DropReason.FRAME_COUNT, f"{kind.name} with {len(views)} frames")
    if tensor:
        return _decode_tensor(kind, header, views[1], limits)
    return _decode_control(kind, header, limits)


def _fail(reason: DropReason, detail: str) -> NoReturn:
    raise MalformedMessage(reason, detail)


def _views(frames: Sequence[Frame]) -> list[memoryview]:
    try:
        count = len(frames)
    except TypeError as err:
        raise MalformedMessage(DropReason.FRAME_TYPE, "frames are not a sequence") from err
    if not 1 <= count <= 2:
        _fail(DropReason.FRAME_COUNT, f"{count} frames")
    try:
        views = [memoryview(f) for f in frames]
        return [v if v.format == "B" and v.ndim == 1 else v.cast("B") for v in views]
    except (TypeError, ValueError) as err:
        raise MalformedMessage(DropReason.FRAME_TYPE, f"frame is not a buffer: {err}") from err


def _check_rank(sender: int, limits: WireLimits) -> None:
    if sender >= limits.num_devices:
        _fail(DropReason.BAD_RANK, f"sender {sender} >= {limits.num_devices} devices")


def _decode_control(kind: MessageKind, header: memoryview, limits: WireLimits) -> Message:
    layout = _HB if kind is MessageKind.HEARTBEAT else _CTL
    if len(header) != _PREFIX.size + layout.size:
        _fail(DropReason.HEADER_LENGTH, f"{kind.name} header of {len(header)} bytes")
    fields = layout.unpack_from(header, _PREFIX.size)
    _check_rank(fields[0], limits)
    stamp = fields[4] if kind is MessageKind.HEARTBEAT else fields[3]
    if not math.isfinite(stamp):
        _fail(DropReason.BAD_FIELD, f"timestamp {stamp}")
    if kind is MessageKind.HEARTBEAT:
        sender, incarnation, epoch, sequence, stamp, down_mask = fields
        return Heartbeat(sender, incarnation, epoch, stamp, sequence, down_mask)
    return _CONTROL_TYPES[kind](*fields)


def _decode_tensor(
    kind: MessageKind, header: memoryview, payload: memoryview, limits: WireLimits
) -> Message:
    if len(payload) > limits.max_payload_bytes:
        _fail(DropReason.PAYLOAD_TOO_LARGE, f"{len(payload)} > {limits.max_payload_bytes}")
    layout = _ACT if kind in _ACTIVATION_KINDS else _RES
    if len(header) < _PREFIX.size + layout.size:
        _fail(DropReason.HEADER_TRUNCATED, f"{kind.name} header of {len(header)} bytes")
    fields = layout.unpack_from(header, _PREFIX.size)
    if kind in _ACTIVATION_KINDS:
        image_id, unit, epoch, sender, code, ndim, mode, n_idx, nbytes = fields
    else:
        (image_id, epoch, sender, code, ndim, nbytes), unit, mode, n_idx = fields, 0, 0, 0
    _check_rank(sender, limits)
    if mode not in (_INDEX_PARTITION, _INDEX_EXPLICIT) or (mode == _INDEX_PARTITION and n_idx):
        _fail(DropReason.BAD_INDICES, f"index mode {mode} with {n_idx} indices")
    tail = _PREFIX.size + layout.size
    if len(header) != tail + 8 * ndim + 4 * n_idx:
        _fail(DropReason.HEADER_LENGTH, f"{len(header)} bytes for {ndim} dims, {n_idx} indices")
    dtype = _decode_dtype(code)
    shape = _decode_shape(header, tail, ndim, dtype, nbytes, limits)
    if nbytes != len(payload):
        _fail(DropReason.PAYLOAD_LENGTH, f"header says {nbytes} bytes, frame has {len(payload)}")
    data = np.frombuffer(payload, dtype=dtype).reshape(shape) if nbytes else np.empty(shape, dtype)
    if kind is MessageKind.RESULT:
        return Result(image_id, epoch, sender, data)
    if kind is MessageKind.INPUT:
        if sender != 0:
            _fail(DropReason.BAD_FIELD, f"input with sender {sender}")
        return Input(image_id, epoch, data)
    indices = None
    if mode == _INDEX_EXPLICIT:
        indices = _decode_indices(header, tail + 8 * ndim, n_idx, shape)
    return Activation(
        image_id, unit, epoch, sender, data, indices, preact=kind is MessageKind.PREACT
    )


def _decode_dtype(code: int) -> np.dtype:
    dtype = _DTYPE_CODES.get(code)
    if dtype is None:
        _fail(DropReason.BAD_DTYPE, f"dtype code {code}")
    return dtype


def _decode_shape(
    header: memoryview, offset: int, ndim: int, dtype: np.dtype, nbytes: int, limits: WireLimits
) -> tuple[int, ...]:
    if ndim > MAX_NDIM:
        _fail(DropReason.BAD_SHAPE, f"{ndim} dims > {MAX_NDIM}")
    if nbytes > limits.max_payload_bytes:
        _fail(DropReason.PAYLOAD_TOO_LARGE, f"header declares {nbytes} bytes")
    shape = struct.unpack_from(f"<{ndim}Q", header, offset)
    if math.prod(max(d, 1) for d in shape) * dtype.itemsize > limits.max_payload_bytes:
        _fail(DropReason.BAD_SHAPE, f"shape {shape} exceeds the payload limit (0 counts as 1)")
    if math.prod(shape) * dtype.itemsize != nbytes:
        _fail(DropReason.BAD_SHAPE, f"shape {shape} of {dtype} is not {nbytes} bytes")
    return shape


def _decode_indices(
    header: memoryview, offset: int, count: int, shape: tuple[int, ...]
) -> np.ndarray:
    if len(shape) < 2 or shape[1] != count:
        _fail(DropReason.BAD_INDICES, f"{count} indices for shape {shape}")
    idx = np.frombuffer(header, dtype="<u4", count=count, offset=offset)
    if count > 1 and (idx[1:] <= idx[:-1]).any():
        _fail(DropReason.BAD_INDICES, "indices are not strictly increasing")
    return idx


def as_tensor(data: np.ndarray) -> torch.Tensor:
    """A torch tensor sharing ``data``'s memory (decoded arrays are read-only views of the
    frame; torch warns about that, and we must not write to it either)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(data)


# ----------------------------------------------------------------------------- replay
class ReplayGuard:
    """Per sender, accept only heartbeats newer than the newest one accepted.

    Newer means a larger ``(incarnation, sequence)``: the sequence grows within a life and
    the incarnation across restarts. The sender's epoch is monotonic within an incarnation,
    so it adds no order of its own.
    """

    def __init__(self) -> None:
        self._newest: dict[int, tuple[int, int]] = {}

    def accept(self, hb: Heartbeat) -> bool:
        return self.accept_key(hb.sender, hb.incarnation, hb.sequence)

    def accept_key(self, sender: int, incarnation: int, sequence: int) -> bool:
        """Accept ``(incarnation, sequence)`` from ``sender`` if newer (a Join uses -1)."""
        key = (incarnation, sequence)
        newest = self._newest.get(sender)
        if newest is not None and key <= newest:
            return False
        self._newest[sender] = key
        return True

    def incarnation(self, sender: int) -> int | None:
        """The newest incarnation seen from ``sender``, or None."""
        newest = self._newest.get(sender)
        return None if newest is None else newest[0]


@dataclass
class ActivationDedup:
    """Accept each (kind, image, unit, epoch, sender) at most once.

    Remembers the last ``capacity`` keys (oldest forgotten first); the engine also drops data
    for images it has finished, so a replay older than the window is still never used.
    """

    capacity: int = 65536
    _seen: OrderedDict[tuple[int, int, int, int, int], None] = field(
        default_factory=OrderedDict, repr=False
    )

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidParameterError(f"`capacity` must be at least 1, got {self.capacity}.")

    def accept(self, msg: Activation | Result) -> bool:
        unit = msg.unit if isinstance(msg, Activation) else _U32 + 1
        key = (int(msg.kind), msg.image_id, unit, msg.epoch, msg.sender)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def forget_image(self, image_id: int) -> None:
        """Drop the keys of a finished image (its late data is dropped by the engine)."""
        for key in [k for k in self._seen if k[1] == image_id]:
            del self._seen[key]
