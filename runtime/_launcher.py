"""`LocalMesh`: a bundle's N nodes as separate processes on loopback, with real faults.

Nodes are forked from a forkserver that has imported torch and the node code once, so a node
(or a restart) is up in well under a second instead of paying the import each time; each is
still its own process with its own sockets, killed with SIGKILL, stopped with SIGSTOP and
resumed with SIGCONT. Loopback ports are chosen free at start (the bundle's addresses are for
boards), keys and timings come from the bundle. With ``link``, every node emulates that link
profile on its sends (``runtime/_link.py``), sharing one ledger file in the run's folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from torch import Tensor

from robustdice_core import InvalidParameterError, RobustDiceError
from robustdice_core.bundle import CLIENT_SECRET_NAME, RuntimeConfig, read_runtime
from robustdice_core.costs import LinkProfile
from runtime._client import Client, StreamResult
from runtime._link import resolve_link

__all__ = ["Fault", "FaultKind", "LaunchOptions", "LocalMesh", "NodeLife"]


class FaultKind(StrEnum):
    FAIL = "fail"  # SIGKILL
    FREEZE = "freeze"  # SIGSTOP, SIGCONT after ``seconds``
    RESTART = "restart"  # a fresh process (killed first if still running)


@dataclass(frozen=True)
class Fault:
    """``kind`` on node ``rank`` just before image ``image`` is sent."""

    kind: FaultKind
    rank: int
    image: int
    seconds: float = 0.0

    @classmethod
    def parse(cls, kind: FaultKind, text: str) -> Fault:
        """``RANK@IMAGE`` (freeze: ``RANK@IMAGE:SECONDS``)."""
        form = "RANK@IMAGE:SECONDS" if kind is FaultKind.FREEZE else "RANK@IMAGE"
        try:
            rank_text, _, rest = text.partition("@")
            image_text, _, seconds_text = rest.partition(":")
            if (kind is FaultKind.FREEZE) != bool(seconds_text) or not rest:
                raise ValueError
            fault = cls(kind, int(rank_text), int(image_text), float(seconds_text or 0.0))
        except ValueError:
            raise InvalidParameterError(
                f"`--{kind}` {text!r} is not {form} (e.g. `--{kind} "
                f"{'1@200:2' if kind is FaultKind.FREEZE else '1@200'}`)."
            ) from None
        if fault.rank < 0 or fault.image < 0 or fault.seconds < 0:
            raise InvalidParameterError(f"`--{kind}` {text!r}: numbers must be non-negative.")
        return fault

    def label(self) -> str:
        tail = f":{self.seconds:g}" if self.kind is FaultKind.FREEZE else ""
        return f"{self.kind} {self.rank}@{self.image}{tail}"


@dataclass(frozen=True)
class LaunchOptions:
    """``timeout_s`` / ``heartbeat_s`` replace the bundle's failure-detector timings."""

    in_flight: int = 4
    threads: int = 1
    timeout_s: float | None = None
    heartbeat_s: float | None = None
    start_timeout_s: float = 120.0


@dataclass
class NodeLife:
    """One process of one node: when it started and how it ended."""

    rank: int
    life: int
    process: BaseProcess
    report_path: Path
    started_at: float
    ended_at: float | None = None
    ended_by: str | None = None  # "fail", "restart", "stop"
    report: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int | None:
        return self.process.exitcode


@dataclass
class _Applied:
    fault: Fault
    at: float
    resumed_at: float | None = None


@dataclass
class LocalMesh:
    """Starts, faults and stops the nodes of one bundle on this machine."""

    bundle: Path
    options: LaunchOptions = field(default_factory=LaunchOptions)
    report_dir: Path | None = None
    link: LinkProfile | str | None = None  # a profile, its name or a .toml path: emulated

    def __post_init__(self) -> None:
        self.bundle = Path(self.bundle)
        self.link_profile = resolve_link(self.link)
        runtime = read_runtime(self.bundle)
        if self.options.timeout_s is not None or self.options.heartbeat_s is not None:
            runtime = runtime.with_timings(
                self.options.timeout_s or runtime.timeout_s,
                self.options.heartbeat_s or runtime.heartbeat_s,
            )
        self.runtime = _loopback(runtime)
        self.num_devices = len(self.runtime.nodes)
        secret_path = self.bundle / CLIENT_SECRET_NAME
        if not secret_path.is_file():
            raise InvalidParameterError(
                f"`{secret_path}` is missing: this bundle was made without a client key; deploy "
                "it again with `dse deploy`."
            )
        self._client_secret = secret_path.read_text().strip()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.report_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="robustdice-run-")
            self.report_dir = Path(self._tmp.name)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.link_state = self.report_dir / "link.ledger"  # the nodes' shared ports / medium
        self.lives: list[NodeLife] = []
        self.applied: list[_Applied] = []
        self._frozen: dict[int, float] = {}  # rank -> when to resume
        self._context = _node_context()
        self.client: Client | None = None

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Every node up and beating (or a clear error naming the node that is not)."""
        self.client = Client(self.runtime, self._client_secret)
        for rank in range(self.num_devices):
            self._spawn(rank)
        try:
            self.client.wait_ready(self.options.start_timeout_s, alive=self._alive_ranks)
        except RobustDiceError:
            self.stop()
            raise

    def _spawn(self, rank: int) -> NodeLife:
        life = sum(1 for n in self.lives if n.rank == rank)
        assert self.report_dir is not None
        path = self.report_dir / f"node-{rank}-life-{life}.json"
        process = self._context.Process(
            target=_node_process,
            args=(
                str(self.bundle), rank, self.runtime.to_dict(), self.options.in_flight,
                self.options.threads, str(path), self.link_profile, str(self.link_state),
            ),
            name=f"robustdice-node-{rank}",
            daemon=False,
        )  # fmt: skip
        process.start()
        node = NodeLife(rank, life, process, path, time.monotonic())
        self.lives.append(node)
        return node

    def _alive_ranks(self) -> list[int]:
        return [n.rank for n in self.lives if n.ended_at is None and n.process.is_alive()]

    def current(self, rank: int) -> NodeLife:
        return next(n for n in reversed(self.lives) if n.rank == rank)

    # ----------------------------------------------------------------- faults
    def kill(self, rank: int, *, reason: str = "fail") -> float:
        node = self.current(rank)
        at = time.monotonic()
        if node.ended_at is None and node.process.pid is not None:
            self._signal(node, signal.SIGKILL)
            node.process.join(5)
            node.ended_at, node.ended_by = at, reason
        self._frozen.pop(rank, None)
        return at

    def freeze(self, rank: int, seconds: float | None = None) -> float:
        node = self.current(rank)
        at = time.monotonic()
        self._signal(node, signal.SIGSTOP)
        self._frozen[rank] = float("inf") if seconds is None else at + seconds
        return at

    def thaw(self, rank: int) -> float:
        self._signal(self.current(rank), signal.SIGCONT)
        self._frozen.pop(rank, None)
        return time.monotonic()

    def restart(self, rank: int) -> float:
        if self.current(rank).ended_at is None:
            self.kill(rank, reason="restart")
        self._spawn(rank)
        return time.monotonic()

    def apply(self, fault: Fault) -> None:
        if not 0 <= fault.rank < self.num_devices:
            raise InvalidParameterError(
                f"`{fault.label()}`: the bundle has nodes 0..{self.num_devices - 1}."
            )
        actions: dict[FaultKind, Callable[[], float]] = {
            FaultKind.FAIL: lambda: self.kill(fault.rank),
            FaultKind.FREEZE: lambda: self.freeze(fault.rank, fault.seconds),
            FaultKind.RESTART: lambda: self.restart(fault.rank),
        }
        self.applied.append(_Applied(fault, actions[fault.kind]()))

    def tick(self) -> None:
        """Resume frozen nodes whose time is up."""
        now = time.monotonic()
        for rank, until in list(self._frozen.items()):
            if now >= until:
                at = self.thaw(rank)
                for applied in reversed(self.applied):
                    if applied.fault.rank == rank and applied.fault.kind is FaultKind.FREEZE:
                        applied.resumed_at = at
                        break

    def _signal(self, node: NodeLife, sig: signal.Signals) -> None:
        if node.process.pid is not None and node.ended_at is None:
            try:
                os.kill(node.process.pid, sig)
            except ProcessLookupError:
                pass

    def wait_agreed(self, down: set[int], timeout_s: float = 30.0) -> None:
        """Until every running node that is not frozen counts exactly ``down`` as down."""
        assert self.client is not None, "start() the mesh first"
        watchers = [r for r in self._alive_ranks() if r not in self._frozen]
        if not self.client.wait_view(watchers, frozenset(down), timeout_s):
            raise RobustDiceError(
                f"the nodes did not agree on {sorted(down) or 'no'} failed nodes within "
                f"{timeout_s:g} s: {self.client.views}"
            )

    # ----------------------------------------------------------------- streaming
    def stream(
        self,
        images: Tensor,
        *,
        faults: Sequence[Fault] = (),
        image_timeout_s: float | None = None,
    ) -> StreamResult:
        """Stream ``images``, applying each fault just before its image is sent."""
        assert self.client is not None, "start() the mesh first"
        for fault in faults:
            if fault.image >= images.shape[0]:
                raise InvalidParameterError(
                    f"`{fault.label()}`: image {fault.image} is beyond the {images.shape[0]} "
                    "images streamed."
                )
        by_image: dict[int, list[Fault]] = {}
        for fault in faults:
            by_image.setdefault(fault.image, []).append(fault)

        def before_send(i: int) -> None:
            for fault in by_image.get(i, []):
                self.apply(fault)

        timeout = image_timeout_s or max(10.0, 20 * self.runtime.timeout_s)
        return self.client.stream(
            images,
            in_flight=self.options.in_flight,
            image_timeout_s=timeout,
            before_send=before_send,
            on_tick=self.tick,
        )

    def stop(self) -> list[NodeLife]:
        """Stop every node cleanly (SIGTERM; SIGKILL after 10 s) and read their reports."""
        for rank in list(self._frozen):
            self.thaw(rank)
        running = [n for n in self.lives if n.ended_at is None]
        for node in running:
            self._signal(node, signal.SIGTERM)
        for node in running:
            node.process.join(10)
            if node.process.is_alive():
                self._signal(node, signal.SIGKILL)
                node.process.join(5)
            node.ended_at, node.ended_by = time.monotonic(), "stop"
        for node in self.lives:
            if node.report is None and node.report_path.is_file():
                node.report = json.loads(node.report_path.read_text())
        if self.client is not None:
            self.client.close()
            self.client = None
        return self.lives

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _loopback(runtime: RuntimeConfig) -> RuntimeConfig:
    """The mesh on free loopback ports: two per node and one for the client."""
    ports = _free_ports(2 * len(runtime.nodes) + 1)
    nodes = [
        (f"tcp://127.0.0.1:{ports[2 * r]}", f"tcp://127.0.0.1:{ports[2 * r + 1]}")
        for r in range(len(runtime.nodes))
    ]
    return runtime.with_addresses(nodes, client=f"tcp://127.0.0.1:{ports[-1]}")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_context() -> Any:
    """A forkserver that has imported the node code (torch included) once."""
    _quiet_resource_tracker()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["runtime._node"])
    return context


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker without its leak warning: a node killed with
    SIGKILL (a fault we inject on purpose) cannot release its process semaphore, the tracker
    releases it, and its warning would read as a bug in the run."""
    from multiprocessing import resource_tracker

    saved = list(sys.warnoptions)
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions[:] = saved


def _node_process(
    bundle: str,
    rank: int,
    runtime: dict[str, Any],
    in_flight: int,
    threads: int,
    report: str,
    link: LinkProfile | None,
    link_state: str,
) -> None:
    from runtime._node import serve

    sys.exit(
        serve(
            bundle, rank, runtime=runtime, in_flight=in_flight, threads=threads, report=report,
            link=link, link_state=link_state,
        )
    )  # fmt: skip
