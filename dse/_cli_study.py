"""`dse study list` and `dse study run NAME`: the paper's experiments (a thin layer over
`studies`; the command line is the one place `dse` reaches up to it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from dse._cli_options import CalibrationOpt, DataOpt, TestSizeOpt, WeightsOpt, console
from robustdice_core import InvalidParameterError
from studies import (
    KINDS,
    STUDIES,
    StudyOutcome,
    StudyRequest,
    Verdict,
    default_out,
    run_study,
    study_status,
)

__all__ = ["parse_models", "parse_seeds", "study_app"]

study_app = typer.Typer(
    name="study",
    help="The paper's experiments as studies: `dse study list`, `dse study run NAME`.",
    no_args_is_help=True,
)

VERDICT_STYLE = {
    Verdict.CONFIRMED: "green",
    Verdict.NOT_CONFIRMED: "red",
    Verdict.MIXED: "yellow",
    Verdict.OURS_ONLY: "blue",
}


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; anything else is a one-line error naming `--seeds`."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise InvalidParameterError(
            f"`--seeds` must be whole numbers from 0 separated by commas, got {text!r}; "
            "e.g. `--seeds 0,1,2`."
        )
    return tuple(int(p) for p in parts)


def parse_models(values: list[str]) -> tuple[str, ...]:
    """Repeated and/or comma-separated `--model` values, in order."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


@study_app.command("list")
def list_studies() -> None:
    """List the registered studies and whether they can run here."""
    table = Table(title="Studies")
    for column in ("name", "reproduces", "what", "default models", "status"):
        table.add_column(column)
    for name in STUDIES.names():
        spec = STUDIES.get(name)
        missing = study_status(spec)
        seeds = f" (seeds {','.join(map(str, spec.seeds))})" if len(spec.seeds) > 1 else ""
        table.add_row(
            name,
            spec.paper,
            spec.title,
            ", ".join(spec.models) + seeds,
            "ready" if missing is None else f"[yellow]{missing}[/]",
        )
    console.print(table)


@study_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="A study from `dse study list`.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model(s) instead of the study's (repeat or comma-separate; NAME@seedN is "
            "one training of an embedded model).",
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Training seeds of the embedded models, e.g. 0,1,2."),
    ] = None,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    calibration_size: CalibrationOpt = None,
    test_size: TestSizeOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default dse-runs/study-NAME).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="Models trained and scored at a time (default: one per core, max 4)."),
    ] = None,
) -> None:
    """Run a study: CSV, self-contained HTML page and JSON record in the output folder."""
    spec = STUDIES.get(name)
    request = StudyRequest(
        models=parse_models(model) if model else None,
        seeds=parse_seeds(seeds) if seeds is not None else None,
        weights=weights,
        data=data,
        calibration_size=calibration_size,
        test_size=test_size,
    )
    started = time.perf_counter()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:6.0f} s[/]  {message}")

    with console.status(f"running study {name}..."):
        outcome = run_study(
            spec, request, out=out or default_out(spec), progress=progress, jobs=jobs
        )
    _summary(outcome)


def _summary(outcome: StudyOutcome) -> None:
    headline = KINDS.get(outcome.spec.kind).headline(outcome.data)
    console.print(_rich_table(headline, f"{outcome.spec.paper}: {outcome.spec.title}"))
    for finding in outcome.data.findings:
        style = VERDICT_STYLE[finding.verdict]
        console.print(f"[{style}]{finding.verdict.value}[/]: {finding.claim} {finding.ours}")
    for line in outcome.data.provenance[:2]:
        console.print(f"[dim]{line}[/]")
    files = ", ".join(str(p) for p in outcome.files)
    console.print(f"study `{outcome.spec.name}` done in {outcome.elapsed_s:.0f} s: {files}")


def _rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        text = frame[column].dtype == object
        table.add_column(str(column), justify="left" if text else "right", no_wrap=text)
    for row in frame.itertuples(index=False):
        table.add_row(
            *("" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v) for v in row)
        )
    return table
