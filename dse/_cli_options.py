"""Shared pieces of the `dse` command line: consoles, option types, defaults.

Every command module (`dse.cli` and the `_cli_*` modules it registers) takes its option
types and defaults from here, so `--help` says the same thing everywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dse._settings import StudySettings
from robustdice_core.importance import SCORERS
from robustdice_core.partition import CLUSTERINGS

__all__ = [
    "DEFAULTS",
    "DEFAULT_STORAGE",
    "INTERRUPTED_EXIT",
    "BatchSizeOpt",
    "CalibrationOpt",
    "ClusteringOpt",
    "ComputeDeviceOpt",
    "DataOpt",
    "DevicesOpt",
    "ModelOpt",
    "ScoresOpt",
    "StorageOpt",
    "StudyArg",
    "TestSizeOpt",
    "WeightsOpt",
    "console",
    "err_console",
]

# Piped output (CI logs, README captures) gets a fixed width wide enough for the tables.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, soft_wrap=True)  # an error is always one line
DEFAULTS = StudySettings()  # the one source of option defaults
DEFAULT_STORAGE = "dse-runs/studies.log"
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report Ctrl-C

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registered model name (see `dse models`).")
]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="Local state-dict file (.pth/.safetensors) for the model.")
]
DataOpt = Annotated[
    Path | None, typer.Option(help="ImageNet-style folder (class sub-folders) for real models.")
]
DevicesOpt = Annotated[int, typer.Option("--devices", "-n", help="Number of devices ND.")]
ScoresOpt = Annotated[
    str, typer.Option(help=f"Importance scores to cluster on, from: {', '.join(SCORERS.names())}.")
]
ClusteringOpt = Annotated[
    str,
    typer.Option(help=f"Step-2 clustering: {', '.join(CLUSTERINGS.names())} (docs/dse.md)."),
]
CalibrationOpt = Annotated[int | None, typer.Option(help="Calibration images.")]
TestSizeOpt = Annotated[int | None, typer.Option(help="Test images.")]
StorageOpt = Annotated[str, typer.Option(help="Optuna storage URL or journal .log file.")]
ComputeDeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="Where importance scores and failure evaluation run: auto (CUDA when present), "
        "cpu, cuda or cuda:N. Results mean the same on every device (docs/semantics.md).",
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Samples (images x failure sets, or images x s3 ablations) per batched forward "
        "(default: from a memory budget; on CUDA half the free memory)."
    ),
]
StudyArg = Annotated[
    str | None, typer.Argument(help="Study name (default: the most recent in the storage).")
]
