"""`dse report`: write a study's interactive report (a thin layer over `write_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dse._cli_options import DEFAULT_STORAGE, StorageOpt, StudyArg, console
from dse._report import write_report

__all__ = ["report"]

OutOpt = Annotated[
    Path | None,
    typer.Option(
        help="Exports folder, as for `dse optimize --out` (default dse-runs): the report goes "
        "to OUT/<study>/report.html. A name ending in .html is the report file itself."
    ),
]


def report(
    study: StudyArg = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    out: OutOpt = None,
) -> None:
    """Write a study's interactive Pareto report: one HTML file that opens offline."""
    path = write_report(storage, study, out)
    size_mb = path.stat().st_size / 1e6
    console.print(
        f"wrote the report ({size_mb:.1f} MB, self-contained, opens offline): {path}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
