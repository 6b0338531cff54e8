"""ZeroMQ CURVE key pairs for the nodes of a bundle (DESIGN 3.8: peers authenticate and
encrypt). Keys are Z85 text, as `zmq.curve_keypair()` makes them."""

from __future__ import annotations

import zmq

from robustdice_core import InvalidParameterError
from robustdice_core.bundle import NodeKeys

__all__ = ["curve_keypairs", "curve_public_key"]


def curve_keypairs(count: int) -> list[NodeKeys]:
    """``count`` fresh CURVE key pairs, one per node, from libzmq's secure random source."""
    if count < 1:
        raise InvalidParameterError(f"`count` must be at least 1, got {count}.")
    if not zmq.has("curve"):
        raise InvalidParameterError(
            "this libzmq was built without CURVE security; install pyzmq's wheels (which "
            "bundle libsodium) to make node keys."
        )
    pairs = []
    for _ in range(count):
        public, secret = zmq.curve_keypair()
        pairs.append(NodeKeys(public=public.decode("ascii"), secret=secret.decode("ascii")))
    return pairs


def curve_public_key(secret: str) -> str:
    """The public key that belongs to ``secret`` (a node checks its key file with it)."""
    return zmq.curve_public(secret.encode("ascii")).decode("ascii")
