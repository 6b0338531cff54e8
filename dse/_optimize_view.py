"""Terminal rendering of `dse optimize`: a progress bar and the final Pareto table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dse._optimize import OptimizeResult, prepare_study, run_study
from dse._optimize import Progress as StudyProgress
from dse._settings import StudySettings

__all__ = ["optimize_view", "front_table"]


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
    problem = prepared.problem
    for note in problem.bench.notes:
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
    console.print(f"hypervolume {result.hypervolume:.4f}; study `{name}` in {storage}")
    for path in result.files:
        console.print(f"  wrote {path}")
    if result.interrupted:
        console.print("[yellow]interrupted[/]: rerun the same command to resume the study.")
    return result


def front_table(result: OptimizeResult) -> Table:
    """The Pareto front (feasible trials) next to the baselines."""
    objectives = result.problem.objectives
    table = Table(title=f"Pareto front ({len(result.front)} feasible trials) and baselines")
    table.add_column("trial / method")
    for objective in objectives:
        arrow = "↑" if objective.direction == "maximize" else "↓"
        table.add_column(f"{objective.name} {arrow}\n{objective.label}", justify="right")
    table.add_column("repl.", justify="right")
    table.add_column("thresholds\nmin / median / max", justify="right")
    for trial in result.front:
        thresholds = np.array(list(trial.params.values()))
        table.add_row(
            f"#{trial.number}",
            *(f"{v:.6g}" for v in trial.values),
            f"{trial.user_attrs.get('replication_factor', float('nan')):.2f}",
            f"{thresholds.min():.3f} / {np.median(thresholds):.3f} / {thresholds.max():.3f}",
        )
    table.add_section()
    for label, evaluation in result.baselines.items():
        marker = "" if evaluation.feasible else " (infeasible)"
        table.add_row(
            f"[dim]{label}{marker}[/]",
            *(f"[dim]{v:.6g}[/]" for v in evaluation.values),
            f"[dim]{evaluation.outcome.replication_factor:.2f}[/]",
            "",
        )
    return table
