"""The runtime's configuration in a bundle: the mesh's addresses, timings and CURVE keys.

``runtime.json`` (bundle root) describes the whole mesh: every node's rank, data and heartbeat
addresses and *public* key, the failure-detector timeout and the heartbeat interval.
The mesh also names the *client*: the process that streams images to every node and collects
the results (`dse run`); it listens for results at ``client.address`` and authenticates with
its own key pair, whose secret is ``client.key`` at the bundle root (mode 0600).
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
    "ClientAddress",
    "NodeAddress",
    "NodeConfig",
    "NodeKeys",
    "RuntimeConfig",
    "check_z85_key",
]

DEFAULT_TIMEOUT_S = 1.0  # a peer silent this long is marked down (5 missed heartbeats)
DEFAULT_HEARTBEAT_S = 0.2  # every node sends a heartbeat this often
DEFAULT_BASE_PORT = 5550  # data port; the heartbeat port is the next one
RUNTIME_VERSION = 2  # 2: the client's address and public key
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
class ClientAddress:
    """Where the client (`dse run`) collects results, and its public key."""

    address: str
    public_key: str

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "public_key": self.public_key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str) -> ClientAddress:
        key = get_str(data, "public_key", prefix)
        try:
            check_z85_key(key, "a public key")
        except InvalidParameterError as err:
            raise CorruptFileError(f"field `{where(prefix, 'public_key')}`: {err}") from None
        return cls(address=get_str(data, "address", prefix), public_key=key)


@dataclass(frozen=True)
class RuntimeConfig:
    """The mesh: one `NodeAddress` per rank, the client, the failure detector's timings."""

    nodes: tuple[NodeAddress, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    client: ClientAddress | None = None  # None: written without a client key (no `dse run`)

    def __post_init__(self) -> None:
        if [n.rank for n in self.nodes] != list(range(len(self.nodes))):
            raise InvalidParameterError("runtime nodes must be listed by rank 0..N-1.")
        if not 0 < self.heartbeat_s < self.timeout_s:
            raise InvalidParameterError(
                f"`heartbeat_s` ({self.heartbeat_s}) must be positive and below `timeout_s` "
                f"({self.timeout_s}): a peer is declared down after missing heartbeats."
            )
        endpoints = [e for n in self.nodes for e in (n.data, n.heartbeat)]
        if self.client is not None:
            endpoints.append(self.client.address)
        if len(set(endpoints)) != len(endpoints):
            raise InvalidParameterError(
                "every node needs its own data and heartbeat address, and the client its own."
            )
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
        client_key: str | None = None,
    ) -> RuntimeConfig:
        """Boards ``tcp://board-R:PORT`` (placeholders to edit), or with ``local`` loopback
        ``tcp://127.0.0.1:PORT`` with two distinct ports per node; the client (when its
        public key is given) at ``tcp://client:PORT - 1``, locally the port after the nodes'."""
        nodes = []
        for rank, key in enumerate(public_keys):
            host = "127.0.0.1" if local else f"board-{rank}"
            port = base_port + 2 * rank if local else base_port
            nodes.append(
                NodeAddress(rank, f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}", key)
            )
        client = None
        if client_key is not None:
            where_ = (
                f"tcp://127.0.0.1:{base_port + 2 * len(nodes)}"
                if local
                else f"tcp://client:{base_port - 1}"
            )
            client = ClientAddress(where_, check_z85_key(client_key, "the client's public key"))
        return cls(tuple(nodes), timeout_s=timeout_s, heartbeat_s=heartbeat_s, client=client)

    def with_addresses(
        self, nodes: Sequence[tuple[str, str]], client: str | None = None
    ) -> RuntimeConfig:
        """The same mesh (keys, timings) at other addresses: ``(data, heartbeat)`` per rank
        (e.g. free loopback ports chosen by a local launch)."""
        moved = tuple(
            NodeAddress(n.rank, data, heartbeat, n.public_key)
            for n, (data, heartbeat) in zip(self.nodes, nodes, strict=True)
        )
        new_client = self.client
        if client is not None and self.client is not None:
            new_client = ClientAddress(client, self.client.public_key)
        return RuntimeConfig(moved, self.timeout_s, self.heartbeat_s, new_client)

    def with_timings(self, timeout_s: float, heartbeat_s: float) -> RuntimeConfig:
        """The same mesh with other failure-detector timings (validated)."""
        return RuntimeConfig(self.nodes, timeout_s, heartbeat_s, self.client)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": RUNTIME_VERSION,
            "timeout_s": self.timeout_s,
            "heartbeat_s": self.heartbeat_s,
            "nodes": [n.to_dict() for n in self.nodes],
            "client": None if self.client is None else self.client.to_dict(),
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
        client = data.get("client")
        if client is not None and not isinstance(client, Mapping):
            raise CorruptFileError(f"field `{where(prefix, 'client')}` must be an object.")
        try:
            return cls(
                nodes=tuple(
                    NodeAddress.from_dict(n, where(where(prefix, "nodes"), i))
                    for i, n in enumerate(nodes)
                ),
                timeout_s=get_float(data, "timeout_s", prefix),
                heartbeat_s=get_float(data, "heartbeat_s", prefix),
                client=(
                    None
                    if client is None
                    else ClientAddress.from_dict(client, where(prefix, "client"))
                ),
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
