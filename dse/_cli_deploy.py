"""`dse deploy` and `dse verify`: thin typer commands over `dse._deploy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dse import _deploy
from dse._cli_options import DEFAULT_STORAGE, StorageOpt, StudyArg, console
from dse._pick import PICK_RULES
from robustdice_core import BASELINES
from robustdice_core.bundle import ExpectedMetrics, Manifest, VerifyReport
from robustdice_core.costs import MB, describe_schedule

__all__ = ["deploy", "verify"]


def deploy(
    out: Annotated[Path, typer.Option(help="Bundle folder to create (new or empty).")],
    study: StudyArg = None,
    trial: Annotated[
        int | None, typer.Option(help="Deploy this COMPLETE trial (see `dse pareto`).")
    ] = None,
    pick: Annotated[
        str | None,
        typer.Option(help=f"Deploy the front trial chosen by: {', '.join(PICK_RULES.names())}."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help=f"Deploy a baseline instead: {', '.join(BASELINES.names())}."),
    ] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    force: Annotated[
        bool,
        typer.Option(help="Replace an earlier bundle in --out; deploy an infeasible trial."),
    ] = False,
    local: Annotated[
        bool, typer.Option(help="Loopback addresses (127.0.0.1, one port pair per node).")
    ] = False,
) -> None:
    """Write a trial's partition (or a baseline's) as a deployable bundle (docs/bundle.md)."""
    with console.status("loading the study, the model and its scores; writing the bundle..."):
        result = _deploy.deploy(
            storage,
            study,
            out=out,
            trial=trial,
            pick=pick,
            method=method,
            force=force,
            local=local,
        )
    console.print(_manifest_table(result.manifest, result.selection))
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if not result.feasible:
        console.print("[yellow]deployed although infeasible (--force)[/]")
    console.print(f"bundle written to {result.out} ({result.seconds:.1f} s)", highlight=False)


def verify(
    directory: Annotated[Path, typer.Argument(help="The bundle folder (`dse deploy --out`).")],
) -> None:
    """Check a bundle: file hashes, shards, keys, and logits equal to the original model."""
    with console.status(f"verifying {directory}..."):
        report = _deploy.verify(directory)
    console.print(_report_table(report))
    console.print(f"bundle {report.directory} verified ({report.seconds:.1f} s)", highlight=False)


def _manifest_table(manifest: Manifest, selection: str) -> Table:
    table = Table(title=f"{manifest.model}: {selection} on {manifest.num_devices} devices")
    for column in ("device", "shard MB", "expected memory MB", "expected J/img"):
        table.add_column(column, justify="right")
    shards = manifest.shard_bytes()
    costs = manifest.expected.costs.per_device if manifest.expected is not None else ()
    for rank, size in enumerate(shards):
        cost = costs[rank] if rank < len(costs) else None
        table.add_row(
            str(rank),
            f"{size / MB:.3f}",
            f"{cost.memory_bytes / MB:.1f}" if cost else "-",
            f"{cost.energy_j:.4g}" if cost else "-",
        )
    if manifest.expected is not None:
        table.caption = _expected_caption(manifest.expected)
    return table


def _expected_caption(expected: ExpectedMetrics) -> str:
    caption = (
        f"replication {expected.replication_factor:.2f}, {expected.costs.fps:.1f} FPS "
        f"({expected.costs.provenance.value}, {describe_schedule(expected.costs.in_flight)})"
    )
    top1 = dict(expected.top1_pct)
    failed = [v for k, v in top1.items() if k != "no failure"]
    if "no failure" in top1 and failed:
        caption += (
            f"; Top-1 {top1['no failure']:.1f} % with no failure, worst {min(failed):.1f} % "
            "under the failure sets evaluated (simulated)"
        )
    return caption


def _report_table(report: VerifyReport) -> Table:
    table = Table(title=f"{report.model} bundle on {report.num_devices} devices")
    table.add_column("check")
    table.add_column("result")
    table.add_row("files hashed", str(report.files_checked))
    table.add_row("bundle size", f"{report.bundle_bytes / MB:.2f} MB")
    table.add_row("shard MB per device", ", ".join(f"{b / MB:.3f}" for b in report.shard_bytes))
    table.add_row("compared with", report.reference)
    diff = report.max_abs_logit_diff
    table.add_row("max |logit diff|", "hash only" if diff is None else f"{diff:.2e}")
    return table
