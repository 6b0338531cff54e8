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
    options = parser.parse_args(args)
    from runtime._node import serve

    sys.exit(
        serve(
            options.bundle,
            options.rank,
            in_flight=options.in_flight,
            threads=options.threads,
            report=options.report,
        )
    )
