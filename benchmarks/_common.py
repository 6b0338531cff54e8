"""Shared benchmark helpers: timing, machine info, JSON results and rich tables."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
console = Console()
if not console.is_terminal:
    console.width = 140  # logs and pipes: do not squeeze the tables


@dataclass(frozen=True)
class Timing:
    """Wall times (seconds) of repeated calls of one function."""

    times: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def to_dict(self) -> dict[str, Any]:
        return {"best_s": self.best, "median_s": self.median, "times_s": list(self.times)}


def measure(
    fn: Callable[[], object],
    *,
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
) -> Timing:
    """Time ``fn`` with ``time.perf_counter``: ``warmup`` untimed calls, then up to ``repeats``.

    With ``budget_s``, stop repeating once the timed calls together exceed it (at least one).
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if budget_s is not None and sum(times) >= budget_s:
            break
    return Timing(tuple(times))


def measure_interleaved(
    fns: dict[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1
) -> dict[str, Timing]:
    """Time several functions round-robin, so slow drifts of a noisy machine hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in times.items()}


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """One timed call: ``(seconds, result)``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_1_5_15": list(os.getloadavg()),  # other work on the machine skews times
    }


@dataclass
class BenchResult:
    """One benchmark's outcome: its settings, measurements and headline ratios."""

    name: str
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": machine_info(), **asdict(self)}


def write_result(result: BenchResult, directory: Path = RESULTS_DIR) -> Path:
    """Write ``<directory>/<name>.json`` atomically and return its path; a smoke run
    (``settings["quick"]``) goes to ``<name>.quick.json`` and never replaces a real result."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".quick.json" if result.settings.get("quick") else ".json"
    path = directory / f"{result.name}{suffix}"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()  # numpy scalars and arrays
    raise TypeError(f"cannot serialise {type(value).__name__}")


def make_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    return table


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 1e-2 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    return str(value)


def ms(seconds: float) -> float:
    return seconds * 1e3


def quick_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    return parser


def report(result: BenchResult, table: Table) -> Path:
    """Write the JSON result, print the table and the notes; return the JSON path."""
    path = write_result(result)
    console.print(table)
    for note in result.notes:
        console.print(f"  - {note}")
    console.print(f"[dim]written {path}[/dim]")
    return path


def code_state() -> dict[str, Any]:
    """Commit and uncommitted changes of the code measured (others edit it concurrently)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.rstrip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "dse", "robustdice_core").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": dirty}
