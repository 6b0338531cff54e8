"""The runtime: executes a bundle on N nodes (DESIGN 3.8).

- `NodeProgram`: one node's graph with its shard's rows, paused at every sync point.
- `NodeEngine`: the event handler and engine (heartbeats, failure detector, data sync,
  zero-fill, CDC decoding on the parity device), one loop per node, clock injected.
- `Mesh`: pyzmq sockets with CURVE keys from the bundle, no coordinator.
- `Shaper`: link emulation (bandwidth, latency, loss, switched or shared medium) from a link
  profile, on loopback where the kernel has no netem (``run_local(..., link="wifi")``).
- `robustdice-node` / `python -m runtime node`: a node on a board; `LocalMesh` and
  `run_local`: all nodes as local processes with real faults (`dse run --local`).

A node imports no search or report stack (optuna, pymoo, pandas, plotly).
"""

from __future__ import annotations

from runtime._client import Client, StreamResult
from runtime._engine import EngineConfig, EngineStats, NodeEngine
from runtime._keys import curve_keypairs, curve_public_key
from runtime._launcher import Fault, FaultKind, LaunchOptions, LocalMesh, NodeLife
from runtime._link import FileLedger, LinkStats, MemoryLedger, Shaper, link_name, resolve_link
from runtime._membership import (
    HeartbeatConfig,
    HeartbeatSchedule,
    Membership,
    MembershipChange,
    MembershipEvent,
)
from runtime._node import LoadedNode, load_node, serve
from runtime._program import NodeProgram, UnitStep
from runtime._run import FaultReport, NodeReport, RunSummary, Segment, run_local
from runtime._simulate import simulated_logits
from runtime._sync import SyncPlan
from runtime._transport import Mesh, SecureContext, SocketOptions
from runtime._wire import (
    Activation,
    ActivationDedup,
    DropCounter,
    DropReason,
    Heartbeat,
    Input,
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
    "Client",
    "DropCounter",
    "DropReason",
    "EngineConfig",
    "EngineStats",
    "Fault",
    "FileLedger",
    "FaultKind",
    "FaultReport",
    "Heartbeat",
    "HeartbeatConfig",
    "HeartbeatSchedule",
    "Input",
    "Join",
    "LaunchOptions",
    "Leave",
    "LinkStats",
    "LoadedNode",
    "LocalMesh",
    "MalformedMessage",
    "MemoryLedger",
    "Membership",
    "MembershipChange",
    "MembershipEvent",
    "Mesh",
    "Message",
    "MessageKind",
    "NodeEngine",
    "NodeLife",
    "NodeProgram",
    "NodeReport",
    "ReplayGuard",
    "Result",
    "RunSummary",
    "SecureContext",
    "Segment",
    "Shaper",
    "SocketOptions",
    "StreamResult",
    "SyncPlan",
    "UnitStep",
    "WireLimits",
    "as_tensor",
    "curve_keypairs",
    "curve_public_key",
    "decode",
    "encode",
    "link_name",
    "load_node",
    "resolve_link",
    "run_local",
    "serve",
    "simulated_logits",
]
