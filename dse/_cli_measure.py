"""`dse measure` and `dse calibrate`: measured values flow back into the search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dse._calibrate import Calibration, calibrate_file, write_profile
from dse._cli_options import DEFAULT_STORAGE, StorageOpt, StudyArg, console
from dse._measure import MeasureResult, measure_study, parse_trials
from dse._optimize_view import MEASURED_COLUMNS
from robustdice_core import InvalidParameterError

__all__ = ["calibrate", "measure"]


def measure(
    study: StudyArg = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    trials: Annotated[
        str, typer.Option(help="`pareto` (the feasible front) or trial numbers: 3,7,12.")
    ] = "pareto",
    baselines: Annotated[
        bool, typer.Option(help="Also measure the study's baselines (LOP, CDC, replication).")
    ] = True,
    images: Annotated[int, typer.Option(help="Images streamed per run.")] = 64,
    in_flight: Annotated[int, typer.Option(help="Images in flight at once (pipelining).")] = 4,
    emulate_link: Annotated[
        bool,
        typer.Option(help="Emulate the study's link profile on the nodes (else plain loopback)."),
    ] = True,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write every run with its partition (`dse calibrate`)."),
    ] = None,
) -> None:
    """Run trials on local runtime nodes and store measured FPS, latency, memory and energy
    beside the estimates in the study (`dse pareto` / `dse report` show both)."""
    chosen = parse_trials(trials)

    def started(subject: str) -> None:
        console.print(f"measuring {subject.replace(':', ' ')}...", highlight=False)

    result = measure_study(
        storage,
        study,
        trials=chosen,
        baselines=baselines,
        images=images,
        in_flight=in_flight,
        emulate_link=emulate_link,
        json_path=json_out,
        on_start=started,
    )
    console.print(_measure_table(result))
    first = result.entries[0].measurement
    console.print(f"[dim]meas: {escape(first.provenance)}[/]", highlight=False, soft_wrap=True)
    console.print(
        f"saved {len(result.entries)} measurements in study `{escape(result.study)}` "
        f"({result.seconds:.0f} s); `dse pareto` and `dse report` show them.",
        highlight=False,
    )
    if result.json_path is not None:
        console.print(f"  wrote {result.json_path}", highlight=False)


def _measure_table(result: MeasureResult) -> Table:
    table = Table(title=f"Measured on the local runtime: study {result.study}")
    table.add_column("trial / method")
    for column in MEASURED_COLUMNS:
        table.add_column(f"{column.label}\nest / meas", justify="right")
    for entry in result.entries:
        m = entry.measurement
        table.add_row(m.label, *(c.cell(m) for c in MEASURED_COLUMNS))
    return table


def calibrate(
    measurements: Annotated[
        list[Path],
        typer.Argument(
            help="One or more `dse measure --json` files of one study (e.g. one per schedule: "
            "runs of both tell per-message processor time from link delay).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(help="The calibrated profile, a .toml file.")],
    base: Annotated[
        str | None,
        typer.Option(help="Profile to start from (name or .toml; default: the study's)."),
    ] = None,
    hold_out: Annotated[
        str | None,
        typer.Option(help="Runs predicted but not fitted: #3,#7,lop (held-out error)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The profile's name (default: <base>_calibrated).")
    ] = None,
    link_out: Annotated[
        Path | None,
        typer.Option(
            help="Also fit the link's per-message latency and write that link profile here "
            "(.toml; use it with `dse optimize --link-profile`)."
        ),
    ] = None,
) -> None:
    """Fit a device profile (compute and bandwidth efficiency, per-unit and per-message
    overhead; idle power where a meter measured energy) to measured runs; report each run's
    FPS error."""
    held = _labels(hold_out)
    for path, option in ((out, "--out"), (link_out, "--link-out")):
        if path is not None and path.suffix != ".toml":
            raise InvalidParameterError(f"`{option}` must name a .toml file, got `{path}`.")
    calibration = calibrate_file(
        measurements, base=base, hold_out=held, name=name, fit_link=link_out is not None
    )
    path = write_profile(calibration.profile, out)
    if link_out is not None and calibration.link is not None:
        write_profile(calibration.link, link_out, option="--link-out")
        console.print(f"wrote {link_out}; use it with `--link-profile {link_out}`.")
    elif link_out is not None:
        console.print("the link's latency could not be fitted (see above); no link profile.")
    console.print(_error_table(calibration))
    for line in calibration_lines(calibration):
        console.print(escape(line), highlight=False, soft_wrap=True)
    console.print(
        f"wrote {path}; use it with `dse optimize --device-profile {path}`.", highlight=False
    )


def _labels(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    labels = tuple(p.strip() for p in text.split(",") if p.strip())
    if not labels:
        raise InvalidParameterError(f"`--hold-out` lists no runs, got {text!r}.")
    return tuple(f"#{p}" if p.isdigit() else p for p in labels)


def _error_table(calibration: Calibration) -> Table:
    mixed = len({e.in_flight for e in calibration.errors}) > 1
    schedules = "each run in its own schedule" if mixed else calibration.schedule
    table = Table(title=f"FPS: measured and predicted ({schedules})")
    for header in ("run", "", "measured", "base", "error %", "calibrated", "error %"):
        table.add_column(header, justify="left" if header in ("run", "") else "right")
    for e in calibration.errors:
        table.add_row(
            f"{e.label} ({e.in_flight} in flight)" if mixed else e.label,
            "held out" if e.held_out else "fitted",
            f"{e.measured_fps:.4g}",
            f"{e.base_fps:.4g}",
            f"{e.base_error_pct:+.1f}",
            f"{e.fitted_fps:.4g}",
            f"{e.fitted_error_pct:+.1f}",
        )
    return table


def calibration_lines(calibration: Calibration) -> list[str]:
    """The fitted values, what was kept, and the error summaries."""
    profile = calibration.profile
    lines = [f"fitted: {name} = {getattr(profile, name).value:.4g}" for name in calibration.fitted]
    if calibration.link is not None:
        lines.append(f"fitted: link latency_s = {calibration.link.latency_s.value:.4g}")
    lines += [
        f"kept from {calibration.base.name}: {k} ({why})" for k, why in calibration.kept.items()
    ]
    for held, label in ((False, "fitted runs"), (True, "held-out runs")):
        fitted, base = calibration.summary(held), calibration.base_summary(held)
        if fitted is not None and base is not None:
            lines.append(
                f"|FPS error| on {label}: calibrated median {fitted[0]:.1f} %, max "
                f"{fitted[1]:.1f} %; {calibration.base.name}: median {base[0]:.1f} %, max "
                f"{base[1]:.1f} %"
            )
    return lines
