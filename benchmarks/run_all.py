"""Run every benchmark: ``python -m benchmarks.run_all [--quick]``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from rich.table import Table

from benchmarks import (
    bench_calibration,
    bench_device,
    bench_failure_eval,
    bench_hv,
    bench_links,
    bench_partition,
    bench_racing,
    bench_runtime,
    bench_s3,
    bench_s3_memory,
    bench_workers,
)
from benchmarks._common import BenchResult, console, quick_parser, report

BENCHMARKS: tuple[ModuleType, ...] = (
    bench_partition,
    bench_failure_eval,
    bench_s3,
    bench_s3_memory,
    bench_racing,
    bench_runtime,
    bench_links,
    bench_calibration,
    bench_hv,
    bench_workers,
    bench_device,
)


def run_one(module: ModuleType, quick: bool) -> tuple[BenchResult, Table]:
    console.rule(f"[bold]{module.NAME}")
    runner: Callable[..., BenchResult] = module.run
    result = runner(quick=quick)
    return result, module.table(result)


def main(argv: Sequence[str] | None = None) -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    finished = []
    for module in BENCHMARKS:
        result, table = run_one(module, args.quick)
        report(result, table)
        finished.append(result)
    console.rule("[bold]targets")
    for result in finished:
        met = result.summary.get("target_met")
        if met is None:  # per-model summaries (partition)
            met = all(v.get("target_met", True) for v in result.summary.values())
        console.print(f"{result.name}: {'met' if met else '[red]MISSED[/red]'}")


if __name__ == "__main__":
    main()
