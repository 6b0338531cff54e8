"""Terminal rendering of `dse optimize`: a progress bar, the final Pareto table, footnotes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dse._objectives import Objective
from dse._optimize import OptimizeResult, PreparedStudy, prepare_study, run_study
from dse._optimize import Progress as StudyProgress
from dse._pareto import FrontChange, front_change
from dse._record import TrialRecord
from dse._results import BaselineResult, Measurement, measured_value, trial_measurement
from dse._settings import StudySettings
from robustdice_core import BASELINES, RobustDiceError
from robustdice_core.costs import MB, load_device_profile

__all__ = [
    "Interrupted",
    "PlainProgress",
    "column_format",
    "front_change_lines",
    "front_footnotes",
    "front_table",
    "profile_footnotes",
    "optimize_view",
]

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
    workers: int = 1,
) -> OptimizeResult:
    """Run the study with a live display (``workers`` > 1: that many worker processes run
    the trials); Ctrl-C ends it with exit status 130 and one line."""
    try:
        with console.status(f"loading {settings.model}, scoring, evaluating the baselines..."):
            prepared = prepare_study(settings, storage_url=storage, study_name=study, out_root=out)
    except KeyboardInterrupt:
        raise Interrupted("interrupted while loading; no trial was run. Rerun to start.") from None
    name = prepared.study.study_name
    with prepared:
        for note in prepared.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True, highlight=False)
        for note in prepared.problem.bench.notes:
            console.print(f"[yellow]note:[/] {note}")
        if workers > 1:
            console.print(f"{workers} worker processes on study `{escape(name)}`.")
        if console.is_terminal:
            result = _run_with_bar(console, prepared, name, trials, workers)
        else:
            progress = PlainProgress(console, name)
            result = run_study(prepared, trials=trials, workers=workers, on_progress=progress)
    if result.recovered:
        console.print(f"recovered {result.recovered} trial(s) left running by a killed run.")
    for lost in result.lost_workers:
        console.print(f"[red]{lost}[/] ended early; a trial it ran is retried by the others.")
    console.print(front_table(result.problem.objectives, result.front, result.baseline_results))
    for line in front_footnotes(result):
        console.print(f"[dim]{line}[/]", highlight=False)
    if result.failures:
        console.print(
            f"[red]{len(result.failures)} trial(s) failed[/]; the first: {result.failures[0]}",
            highlight=False,
        )
    console.print(f"hypervolume {result.hypervolume:.4f}; study `{name}` in {storage}")
    for path in result.files:
        console.print(f"  wrote {path}")
    if result.interrupted:
        raise Interrupted(
            f"interrupted: {result.completed} trials saved; rerun the same command to resume."
        )
    return result


class Interrupted(RobustDiceError):
    """Ctrl-C: the CLI prints the message and exits with status 130."""


def _run_with_bar(
    console: Console, prepared: PreparedStudy, name: str, trials: int, workers: int
) -> OptimizeResult:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("feasible {task.fields[feasible]}"),
        TextColumn("front {task.fields[front]}"),
        TextColumn("HV {task.fields[hv]:.4f}"),
        TextColumn("{task.fields[failed]}"),
        TextColumn("{task.fields[workers]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(name, total=trials, feasible=0, front=0, hv=0.0, failed="", workers="")

        def update(p: StudyProgress) -> None:
            failed = f"[red]failed {p.failed}[/]" if p.failed else ""
            bar.update(
                task,
                completed=p.done,
                feasible=p.feasible,
                front=p.front,
                hv=p.hypervolume,
                failed=failed,
                workers=_workers_text(p),
            )

        return run_study(prepared, trials=trials, workers=workers, on_progress=update)


def _workers_text(p: StudyProgress) -> str:
    """Running trials (in any process) and live workers, when others share the study."""
    parts = [f"running {p.running}"] if p.workers or p.running > 1 else []
    if p.workers:
        parts.append(f"workers {p.workers}")
    return ", ".join(parts)


class PlainProgress:
    """Progress for logs and pipes (no terminal, so no live bar): one plain line every
    ``every_trials`` completed trials or ``every_s`` seconds, and at the end."""

    def __init__(
        self,
        console: Console,
        name: str,
        *,
        every_trials: int = 10,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console, self._name, self._clock = console, name, clock
        self._every_trials, self._every_s = every_trials, every_s
        self._start = self._last_time = clock()
        self._last_done = -1

    def __call__(self, p: StudyProgress) -> None:
        now = self._clock()
        due = (
            self._last_done < 0
            or p.done >= p.target
            or p.done - self._last_done >= self._every_trials
            or now - self._last_time >= self._every_s
        )
        if not due or p.done == self._last_done:
            return
        self._last_done, self._last_time = p.done, now
        failed = f", failed {p.failed}" if p.failed else ""
        workers = _workers_text(p)
        workers = f", {workers}" if workers else ""
        self._console.print(
            f"{self._name}: trials {p.done}/{p.target}, feasible {p.feasible}, front {p.front}, "
            f"HV {p.hypervolume:.4f}{failed}{workers}, {now - self._start:.0f} s",
            highlight=False,
        )


def column_format(values: Sequence[float], decimals: int | None = None) -> Callable[[float], str]:
    """One format for a whole column: ``decimals`` if given, else enough decimals to show
    four significant digits of the column's largest magnitude (so rows are comparable)."""
    if decimals is None:
        finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
        largest = max(finite, default=1.0)
        decimals = min(max(3 - math.floor(math.log10(largest)), 0), 9)
    return lambda value: f"{value:.{decimals}f}"


def front_table(
    objectives: Sequence[Objective],
    front: Sequence[FrozenTrial],
    baseline_results: Mapping[str, BaselineResult],
    change: FrontChange | None = None,
) -> Table:
    """The Pareto front (feasible trials) next to the baselines, one format per column.

    ``change``: the front's change under measured values over every measured trial
    (`StudySnapshot.front_change`); without it, only the front trials are weighed."""
    names = [o.name for o in objectives]
    records = [TrialRecord.from_trial(trial) for trial in front]
    mixed = len({r.method for r in records if r is not None}) > 1  # `--method both`
    rows: list[tuple[str, Sequence[float], float, str]] = []
    for trial, record in zip(front, records, strict=True):
        thresholds = np.array(list(trial.params.values()))
        spread = f"{thresholds.min():.3f} / {np.median(thresholds):.3f} / {thresholds.max():.3f}"
        method = f" {record.method}" if mixed and record is not None else ""
        rows.append(
            (
                f"#{trial.number}{method}",
                trial.values,
                record.replication_factor if record else math.nan,
                spread,
            )
        )
    baselines = [
        (BASELINES.get(key).label, b.values, b.replication_factor, b.feasible)
        for key, b in baseline_results.items()
    ]
    every = [list(values) for _, values, _, _ in rows] + [list(b[1]) for b in baselines]
    formats = [
        column_format([v[i] for v in every], FIXED_DECIMALS.get(name))
        for i, name in enumerate(names)
    ]
    measured = [trial_measurement(t) for t in front] + [
        b.measured for b in baseline_results.values()
    ]
    shown = _measured_columns(measured)
    mem = names.index("mem") if "mem" in names else None
    full = baseline_results.get(FULL_REPLICATION)
    full_mem = full.values[mem] if full is not None and mem is not None else None

    table = Table(title=f"Pareto front ({len(front)} feasible trials) and baselines")
    table.add_column("trial / method")
    for objective in objectives:
        arrow = "↑" if objective.maximize else "↓"
        table.add_column(f"{objective.name} {arrow}\n{objective.label}", justify="right")
    if full_mem:
        table.add_column("mem /\nfull repl.", justify="right")
    table.add_column("repl.", justify="right")
    for column in shown:
        table.add_column(f"{column.label}\nest / meas", justify="right")
    table.add_column("thresholds\nmin / median / max", justify="right")

    def cells(values: Sequence[float], replication: float, m: Measurement | None) -> list[str]:
        out = [fmt(v) for fmt, v in zip(formats, values, strict=True)]
        if full_mem and mem is not None:
            out.append(f"{values[mem] / full_mem:.2f}")
        return [*out, f"{replication:.2f}", *(c.cell(m) for c in shown)]

    for (label, values, replication, spread), m in zip(rows, measured, strict=False):
        table.add_row(label, *cells(values, replication, m), spread)
    table.add_section()
    for (label, values, replication, feasible), b in zip(
        baselines, baseline_results.values(), strict=True
    ):
        marker = "" if feasible else " (infeasible)"
        row = cells(values, replication, b.measured)
        table.add_row(f"[dim]{label}{marker}[/]", *(f"[dim]{c}[/]" for c in row), "")
    if shown:
        table.caption = _measured_caption(objectives, front, measured, change)
    return table


@dataclass(frozen=True)
class _MeasuredColumn:
    """A figure shown as ``estimated / measured`` for the trials `dse measure` ran."""

    label: str
    estimated: Callable[[Measurement], float | None]
    measured: Callable[[Measurement], float | None]
    digits: int

    def cell(self, m: Measurement | None) -> str:
        if m is None:
            return "-"
        est, meas = self.estimated(m), self.measured(m)
        shown = [f"{v:.{self.digits}g}" if v is not None else "-" for v in (est, meas)]
        return " / ".join(shown)


# FPS: the overlapped estimate (the runtime pipelines `in_flight` images, docs/cost_model.md);
# memory: the estimate with the profile's runtime constant against the largest peak RSS.
MEASURED_COLUMNS = (
    _MeasuredColumn("FPS", lambda m: m.estimated.get("fps_overlapped"), lambda m: m.fps, 4),
    _MeasuredColumn(
        "latency ms",
        lambda m: 1e3 * m.estimated["latency_s"] if "latency_s" in m.estimated else None,
        lambda m: 1e3 * m.latency_median_s,
        3,
    ),
    _MeasuredColumn(
        "MB/device", lambda m: m.estimated.get("max_memory_mb"), lambda m: m.peak_rss_mb, 4
    ),
    _MeasuredColumn(
        "J/img/device",
        lambda m: m.estimated.get("max_energy_j_overlapped"),
        lambda m: m.energy_j,
        3,
    ),
)


def _measured_columns(measured: Sequence[Measurement | None]) -> tuple[_MeasuredColumn, ...]:
    """The columns with a measured value for some row (none when nothing was measured)."""
    present = [m for m in measured if m is not None]
    return tuple(c for c in MEASURED_COLUMNS if any(c.measured(m) is not None for m in present))


def _measured_caption(
    objectives: Sequence[Objective],
    front: Sequence[FrozenTrial],
    measured: Sequence[Measurement | None],
    change: FrontChange | None,
) -> str:
    """Where the two numbers of each measured cell come from, and the front among the front
    trials when measured values replace estimates (`StudySnapshot.front_change` also weighs
    measured trials off the front: `dse pareto --json`, `dse report`)."""
    first = next(m for m in measured if m is not None)
    lines = [
        f"est: cost model (FPS and energy overlapped, {first.in_flight} in flight; MB with the "
        f"runtime constant); meas: {first.provenance}"
    ]
    names = [o.name for o in objectives]
    if change is None:
        change = front_change(
            [t.number for t in front],
            [list(t.values) for t in front],
            [[measured_value(n, m) for n in names] for m in measured[: len(front)]],
            names,
            [o.maximize for o in objectives],
            {t.number for t in front},
        )
    return "\n".join(lines + front_change_lines(change))


def front_change_lines(change: FrontChange) -> list[str]:
    """What happens to the front when measured values replace the estimated ones."""
    if not change.measured_objectives:
        return []
    if change.unmeasured:
        missing = ", ".join(f"#{n}" for n in change.unmeasured)
        return [f"measured front: not compared; front trials {missing} are not measured."]
    kept = (
        f" ({', '.join(change.estimated_objectives)} stay estimated: not measured here)"
        if change.estimated_objectives
        else ""
    )
    head = f"measured front, with measured {', '.join(change.measured_objectives)}{kept}: "
    if not change.entered and not change.left:
        return [head + "the same trials."]
    parts = []
    if change.left:
        parts.append("leave " + ", ".join(f"#{n}" for n in change.left))
    if change.entered:
        parts.append("enter " + ", ".join(f"#{n}" for n in change.entered))
    front = ", ".join(f"#{n}" for n in change.measured_front)
    return [head + "; ".join(parts) + f" (front: {front})."]


def profile_footnotes(settings: StudySettings) -> list[str]:
    """Where the numbers come from, and what `mem` leaves out."""
    device = load_device_profile(settings.device_profile)
    lines = [
        f"estimated by the cost model: {device.name} devices on {settings.link_profile} "
        f"({settings.dtype.value}, {settings.schedule_text})."
    ]
    if "mem" in settings.objectives:
        lines.append(
            f"mem = the partition's weights and activations on the fullest device; each device "
            f"also holds the profile's runtime constant of "
            f"{device.runtime_overhead_bytes.value / MB:.0f} MB, counted by `--max-mem-mb`."
        )
    return lines


def front_footnotes(result: OptimizeResult) -> list[str]:
    """`profile_footnotes`, and why energy favours replication when it does."""
    problem = result.problem
    names = [o.name for o in problem.objectives]
    device = problem.device
    lines = profile_footnotes(problem.settings)
    full, lop = result.baselines.get(FULL_REPLICATION), result.baselines.get("lop")
    if "energy" in names and full is not None and lop is not None:
        full_costs, lop_costs = full.outcome.costs, lop.outcome.costs
        if full_costs.max_energy_j <= lop_costs.max_energy_j:
            gather_ms = 1e3 * sum(lop_costs.gather_s_per_sync)
            syncs = len(lop_costs.gather_s_per_sync)
            if lop_costs.in_flight == 1:
                why = (
                    f"LOP waits {gather_ms:.2f} ms of its {1e3 * lop_costs.latency_s:.2f} ms "
                    f"per image on {syncs} all-gathers"
                )
            else:  # overlapped: idle power is paid for 1 / fps, gathers partly hidden
                why = (
                    f"LOP holds each device {1e3 / lop_costs.fps:.2f} ms per image with "
                    f"{lop_costs.in_flight} in flight ({syncs} all-gathers of "
                    f"{gather_ms:.2f} ms in all)"
                )
            lines.append(
                f"energy: full replication is the cheapest here, honestly so under this cost "
                f"model: it exchanges nothing, while {why} at "
                f"{device.idle_power_w.value:g} W idle power. Replication costs memory, not "
                f"energy, in this setting (docs/cost_model.md compares the paper's Table 2)."
            )
    return lines
