"""`robustdice-node BUNDLE --rank R`: one node on a board (argparse: a board needs no typer)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "node":  # `python -m runtime node ...`
        args = args[1:]
    parser = argparse.ArgumentParser(
        prog="robustdice-node",
        description="Run one node of a RobustDiCE bundle: load its shard, join the mesh of "
        "runtime.json, serve images until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("bundle", help="the bundle folder (at least manifest.json and device-R)")
    parser.add_argument("--rank", type=int, required=True, help="this node's rank R")
    parser.add_argument("--in-flight", type=int, default=4, help="images computed at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--report", default=None, help="write the node's figures here (JSON)")
    parser.add_argument(
        "--link",
        default=None,
        metavar="NAME|PATH",
        help="emulate this link profile on the node's sends (a name or a .toml file); for "
        "nodes sharing one host, never on a real network",
    )
    parser.add_argument(
        "--link-state",
        default=None,
        metavar="PATH",
        help="file where this host's nodes share the emulated ports and medium (default: one "
        "in the temp folder named after the mesh's addresses)",
    )
    parser.add_argument("--link-seed", type=int, default=0, help="seed of the emulated losses")
    options = parser.parse_args(args)
    from runtime._node import serve

    sys.exit(
        serve(
            options.bundle,
            options.rank,
            in_flight=options.in_flight,
            threads=options.threads,
            report=options.report,
            link=options.link,
            link_state=options.link_state,
            link_seed=options.link_seed,
        )
    )
