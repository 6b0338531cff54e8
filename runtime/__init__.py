"""The runtime: executes a bundle on N nodes (DESIGN 3.8).

Built so far: the nodes' ZeroMQ CURVE key pairs that `dse deploy` writes into a bundle, the
wire format (a fixed binary header frame plus a raw buffer frame, bounded and fuzzed), and the
failure detector with its membership epoch (clock injected). The mesh transport, the engine
and the local launcher come next (issue 9).
"""

from __future__ import annotations

from runtime._keys import curve_keypairs, curve_public_key
from runtime._membership import (
    HeartbeatConfig,
    HeartbeatSchedule,
    Membership,
    MembershipChange,
    MembershipEvent,
)
from runtime._wire import (
    Activation,
    ActivationDedup,
    DropCounter,
    DropReason,
    Heartbeat,
    Join,
    Leave,
    MalformedMessage,
    Message,
    MessageKind,
    ReplayGuard,
    Result,
    WireLimits,
    as_tensor,
    decode,
    encode,
)

__all__ = [
    "Activation",
    "ActivationDedup",
    "DropCounter",
    "DropReason",
    "Heartbeat",
    "HeartbeatConfig",
    "HeartbeatSchedule",
    "Join",
    "Leave",
    "MalformedMessage",
    "Membership",
    "MembershipChange",
    "MembershipEvent",
    "Message",
    "MessageKind",
    "ReplayGuard",
    "Result",
    "WireLimits",
    "as_tensor",
    "curve_keypairs",
    "curve_public_key",
    "decode",
    "encode",
]
