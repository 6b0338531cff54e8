"""The runtime's configuration in a bundle: the mesh's addresses, timings and CURVE keys.

``runtime.json`` (bundle root) describes the whole mesh: every node's rank, data and heartbeat
addresses and *public* key, the failure-detector timeout and the heartbeat interval.
``device-R/node.json`` holds the same mesh plus which node it is and where its shard and
secret key lie, so a board needs only its own folder (and the manifest) to start. A node's
*secret* key is only ever in ``device-R/secret.key`` (mode 0600), never in a shared file.

Keys are ZeroMQ CURVE keys in Z85 text (40 characters, `zmq.curve_keypair()`); they are made
by `runtime.curve_keypairs` (the core does not import pyzmq) and handed in as `NodeKeys`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustdice_core._errors import CorruptFileError, InvalidParameterError
from robustdice_core.bundle._fields import (
    get_float,
    get_int,
    get_list,
    get_mapping,
    get_str,
    where,
)

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_TIMEOUT_S",
    "NodeAddress",
    "NodeConfig",
    "NodeKeys",
    "RuntimeConfig",
    "check_z85_key",
]

DEFAULT_TIMEOUT_S = 1.0  # a peer silent this long is marked down (5 missed heartbeats)
DEFAULT_HEARTBEAT_S = 0.2  # every node sends a heartbeat this often
DEFAULT_BASE_PORT = 5550  # data port; the heartbeat port is the next one
RUNTIME_VERSION = 1
_Z85 = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def check_z85_key(key: str, what: str) -> str:
    """A CURVE key in Z85 text: 40 characters of the Z85 alphabet."""
    if len(key) != 40 or not set(key) <= _Z85:
        raise InvalidParameterError(
            f"{what} must be a 40-character Z85 CURVE key (`zmq.curve_keypair()`)."
        )
    return key


@dataclass(frozen=True)
class NodeKeys:
    """One node's CURVE key pair (Z85 text); the secret never shows in a repr."""

    public: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        check_z85_key(self.public, "a public key")
        check_z85_key(self.secret, "a secret key")
        if self.public == self.secret:
            raise InvalidParameterError("a node's public and secret keys must differ.")


@dataclass(frozen=True)
class NodeAddress:
    """Where a node listens (data and heartbeat channels) and its public key."""

    rank: int
    data: str
    heartbeat: str
    public_key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "data": self.data,
            "heartbeat": self.heartbeat,
            "public_key": self.public_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> NodeAddress:
        key = get_str(data, "public_key", prefix)
        try:
            check_z85_key(key, "a public key")
        except InvalidParameterError as err:
            raise CorruptFileError(f"field `{where(prefix, 'public_key')}`: {err}") from None
        return cls(
            rank=get_int(data, "rank", prefix),
            data=get_str(data, "data", prefix),
            heartbeat=get_str(data, "heartbeat", prefix),
            public_key=key,
        )


@dataclass(frozen=True)
class RuntimeConfig:
    """The mesh: one `NodeAddress` per rank, the failure detector's timings."""

    nodes: tuple[NodeAddress, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S

    def __post_init__(self) -> None:
        if [n.rank for n in self.nodes] != list(range(len(self.nodes))):
            raise InvalidParameterError("runtime nodes must be listed by rank 0..N-1.")
        if not 0 < self.heartbeat_s < self.timeout_s:
            raise InvalidParameterError(
                f"`heartbeat_s` ({self.heartbeat_s}) must be positive and below `timeout_s` "
                f"({self.timeout_s}): a peer is declared down after missing heartbeats."
            )
        endpoints = [e for n in self.nodes for e in (n.data, n.heartbeat)]
        if len(set(endpoints)) != len(endpoints):
            raise InvalidParameterError("every node needs its own data and heartbeat address.")
        if not all(e.startswith("tcp://") for e in endpoints):
            raise InvalidParameterError("runtime addresses must be `tcp://HOST:PORT`.")

    @classmethod
    def create(
        cls,
        public_keys: Sequence[str],
        *,
        local: bool = False,
        base_port: int = DEFAULT_BASE_PORT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> RuntimeConfig:
        """Boards ``tcp://board-R:PORT`` (placeholders to edit), or with ``local`` loopback
        ``tcp://127.0.0.1:PORT`` with two distinct ports per node."""
        nodes = []
        for rank, key in enumerate(public_keys):
            host = "127.0.0.1" if local else f"board-{rank}"
            port = base_port + 2 * rank if local else base_port
            nodes.append(
                NodeAddress(rank, f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}", key)
            )
        return cls(tuple(nodes), timeout_s=timeout_s, heartbeat_s=heartbeat_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": RUNTIME_VERSION,
            "timeout_s": self.timeout_s,
            "heartbeat_s": self.heartbeat_s,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "") -> RuntimeConfig:
        version = get_int(data, "format_version", prefix)
        if version != RUNTIME_VERSION:
            raise CorruptFileError(
                f"field `{where(prefix, 'format_version')}`: runtime config version {version} "
                f"is not the one this package reads ({RUNTIME_VERSION})."
            )
        nodes = get_list(data, "nodes", prefix)
        try:
            return cls(
                nodes=tuple(
                    NodeAddress.from_dict(n, where(where(prefix, "nodes"), i))
                    for i, n in enumerate(nodes)
                ),
                timeout_s=get_float(data, "timeout_s", prefix),
                heartbeat_s=get_float(data, "heartbeat_s", prefix),
            )
        except InvalidParameterError as err:
            raise CorruptFileError(f"invalid runtime config: {err}") from err


@dataclass(frozen=True)
class NodeConfig:
    """``device-R/node.json``: which node this is, its files, and the whole mesh."""

    rank: int
    runtime: RuntimeConfig
    shard: str = "weights.safetensors"  # relative to the node's folder
    secret_key: str = "secret.key"  # relative to the node's folder

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "shard": self.shard,
            "secret_key": self.secret_key,
            "runtime": self.runtime.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeConfig:
        rank = get_int(data, "rank")
        runtime = RuntimeConfig.from_dict(get_mapping(data, "runtime"), "runtime")
        if not 0 <= rank < len(runtime.nodes):
            raise CorruptFileError(f"field `rank` {rank} is not a node of the mesh.")
        return cls(rank, runtime, get_str(data, "shard"), get_str(data, "secret_key"))
