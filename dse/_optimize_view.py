"""Terminal rendering of `dse optimize`: a progress bar, the final Pareto table, footnotes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dse._optimize import OptimizeResult, prepare_study, run_study
from dse._optimize import Progress as StudyProgress
from dse._record import TrialRecord
from dse._settings import StudySettings
from robustdice_core import BASELINES
from robustdice_core.costs import MB

__all__ = ["column_format", "front_footnotes", "front_table", "optimize_view"]

FULL_REPLICATION = "replication"
FIXED_DECIMALS = {"acc": 1}  # Top-1 % is read to a tenth; other columns get 4 digits


def optimize_view(
    console: Console,
    settings: StudySettings,
    *,
    trials: int,
    storage: str,
    study: str | None,
    out: Path,
) -> OptimizeResult:
    name = study or settings.default_study_name()
    with console.status(f"loading {settings.model}, scoring, evaluating the baselines..."):
        prepared = prepare_study(
            settings, storage_url=storage, study_name=name, out_dir=out / name
        )
    with prepared:
        for note in prepared.problem.bench.notes:
            console.print(f"[yellow]note:[/] {note}")
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("feasible {task.fields[feasible]}"),
            TextColumn("front {task.fields[front]}"),
            TextColumn("HV {task.fields[hv]:.4f}"),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(name, total=trials, feasible=0, front=0, hv=0.0, failed="")

            def update(p: StudyProgress) -> None:
                failed = f"[red]failed {p.failed}[/]" if p.failed else ""
                bar.update(
                    task,
                    completed=p.done,
                    feasible=p.feasible,
                    front=p.front,
                    hv=p.hypervolume,
                    failed=failed,
                )

            result = run_study(prepared, trials=trials, out_dir=out / name, on_progress=update)
    if result.recovered:
        console.print(f"recovered {result.recovered} trial(s) left running by a killed run.")
    console.print(front_table(result))
    for line in front_footnotes(result):
        console.print(f"[dim]{line}[/]", highlight=False)
    console.print(f"hypervolume {result.hypervolume:.4f}; study `{name}` in {storage}")
    for path in result.files:
        console.print(f"  wrote {path}")
    if result.interrupted:
        console.print("[yellow]interrupted[/]: rerun the same command to resume the study.")
    return result


def column_format(values: Sequence[float], decimals: int | None = None) -> Callable[[float], str]:
    """One format for a whole column: ``decimals`` if given, else enough decimals to show
    four significant digits of the column's largest magnitude (so rows are comparable)."""
    if decimals is None:
        finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
        largest = max(finite, default=1.0)
        decimals = min(max(3 - math.floor(math.log10(largest)), 0), 9)
    return lambda value: f"{value:.{decimals}f}"


def front_table(result: OptimizeResult) -> Table:
    """The Pareto front (feasible trials) next to the baselines, one format per column."""
    objectives = result.problem.objectives
    names = [o.name for o in objectives]
    rows: list[tuple[str, Sequence[float], float, str]] = []
    for trial in result.front:
        record = TrialRecord.from_trial(trial)
        thresholds = np.array(list(trial.params.values()))
        spread = f"{thresholds.min():.3f} / {np.median(thresholds):.3f} / {thresholds.max():.3f}"
        rows.append(
            (
                f"#{trial.number}",
                trial.values,
                record.replication_factor if record else math.nan,
                spread,
            )
        )
    baselines = [
        (BASELINES.get(key).label, e.values, e.outcome.replication_factor, e.feasible)
        for key, e in result.baselines.items()
    ]
    every = [list(values) for _, values, _, _ in rows] + [list(b[1]) for b in baselines]
    formats = [
        column_format([v[i] for v in every], FIXED_DECIMALS.get(name))
        for i, name in enumerate(names)
    ]
    mem = names.index("mem") if "mem" in names else None
    full = result.baselines.get(FULL_REPLICATION)
    full_mem = full.values[mem] if full is not None and mem is not None else None

    table = Table(title=f"Pareto front ({len(result.front)} feasible trials) and baselines")
    table.add_column("trial / method")
    for objective in objectives:
        arrow = "↑" if objective.maximize else "↓"
        table.add_column(f"{objective.name} {arrow}\n{objective.label}", justify="right")
    if full_mem:
        table.add_column("mem /\nfull repl.", justify="right")
    table.add_column("repl.", justify="right")
    table.add_column("thresholds\nmin / median / max", justify="right")

    def cells(values: Sequence[float], replication: float) -> list[str]:
        out = [fmt(v) for fmt, v in zip(formats, values, strict=True)]
        if full_mem and mem is not None:
            out.append(f"{values[mem] / full_mem:.2f}")
        return [*out, f"{replication:.2f}"]

    for label, values, replication, spread in rows:
        table.add_row(label, *cells(values, replication), spread)
    table.add_section()
    for label, values, replication, feasible in baselines:
        marker = "" if feasible else " (infeasible)"
        table.add_row(
            f"[dim]{label}{marker}[/]", *(f"[dim]{c}[/]" for c in cells(values, replication)), ""
        )
    return table


def front_footnotes(result: OptimizeResult) -> list[str]:
    """What the table's numbers include and leave out, and when energy favours replication."""
    problem = result.problem
    names = [o.name for o in problem.objectives]
    device, link = problem.device, problem.link
    lines = [
        f"estimated by the cost model: {device.name} devices on {link.name} "
        f"({problem.settings.dtype.value})."
    ]
    if "mem" in names:
        lines.append(
            f"mem = the partition's weights and activations on the fullest device; each device "
            f"also holds the profile's runtime constant of "
            f"{device.runtime_overhead_bytes.value / MB:.0f} MB, counted by `--max-mem-mb`."
        )
    full, lop = result.baselines.get(FULL_REPLICATION), result.baselines.get("lop")
    if "energy" in names and full is not None and lop is not None:
        full_costs, lop_costs = full.outcome.costs, lop.outcome.costs
        if full_costs.max_energy_j <= lop_costs.max_energy_j:
            gather_ms = 1e3 * sum(lop_costs.gather_s_per_sync)
            syncs = len(lop_costs.gather_s_per_sync)
            lines.append(
                f"energy: full replication is the cheapest here, honestly so under this cost "
                f"model: it exchanges nothing, while LOP waits {gather_ms:.2f} ms of its "
                f"{1e3 * lop_costs.latency_s:.2f} ms per image on {syncs} all-gathers at "
                f"{device.idle_power_w.value:g} W idle power. Replication costs memory, not "
                f"energy, in this setting (docs/cost_model.md compares the paper's Table 2)."
            )
    return lines
