"""`dse run`: a bundle on local nodes (separate processes on loopback), with faults."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dse._cli_options import console
from robustdice_core import InvalidParameterError
from robustdice_core.bundle import read_manifest
from robustdice_core.costs import link_profiles
from robustdice_core.zoo import MODELS
from runtime import Fault, FaultKind, LaunchOptions, RunSummary, resolve_link, run_local

__all__ = ["run"]


def run(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (`dse deploy --out`).")],
    local: Annotated[
        bool, typer.Option(help="Run the nodes here, as processes on loopback.")
    ] = False,
    images: Annotated[
        int | None,
        typer.Option(help="Images to stream (default: the whole embedded test split)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="ImageNet-style folder (torchvision models).")
    ] = None,
    in_flight: Annotated[int, typer.Option(help="Images in flight at once.")] = 4,
    fail: Annotated[
        list[str] | None, typer.Option(help="SIGKILL a node: RANK@IMAGE (repeatable).")
    ] = None,
    freeze: Annotated[
        list[str] | None,
        typer.Option(help="SIGSTOP a node, SIGCONT later: RANK@IMAGE:SECONDS (repeatable)."),
    ] = None,
    restart: Annotated[
        list[str] | None,
        typer.Option(help="Start a node afresh (killed first if running): RANK@IMAGE."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Failure-detector timeout in s (default: bundle's).")
    ] = None,
    heartbeat: Annotated[
        float | None, typer.Option(help="Heartbeat interval in s (default: the bundle's).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Torch threads per node.")] = 1,
    link: Annotated[
        str | None,
        typer.Option(
            help=f"Emulate a link profile on the nodes' traffic ({', '.join(link_profiles())}, "
            "or a .toml); default: plain loopback.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the figures here (default: BUNDLE.run.json)."),
    ] = None,
) -> None:
    """Run a bundle on its N nodes locally and report Top-1, FPS, latency and per-node figures."""
    if not local:
        raise InvalidParameterError(
            "`dse run` runs the nodes on this machine: pass `--local`. On boards, start "
            "`robustdice-node BUNDLE --rank R` on each (README, 'Running on boards')."
        )
    faults = [
        Fault.parse(kind, text)
        for kind, texts in ((FaultKind.FAIL, fail), (FaultKind.FREEZE, freeze),
                            (FaultKind.RESTART, restart))
        for text in texts or []
    ]  # fmt: skip
    profile = resolve_link(link)  # a bad name or file fails here, before any node starts
    manifest = read_manifest(bundle)
    spec = MODELS.get(manifest.model)
    test = spec.eval_data(data, calibration_size=None, test_size=images).test
    options = LaunchOptions(
        in_flight=in_flight, threads=threads, timeout_s=timeout, heartbeat_s=heartbeat
    )
    with console.status(
        f"starting {manifest.num_devices} nodes and streaming {len(test)} images..."
    ):
        summary, _ = run_local(
            bundle, test.images, test.labels, faults=faults, options=options, link=profile
        )
    out = json_out or bundle.with_name(f"{bundle.name}.run.json")
    summary.write(out)
    _print(summary)
    console.print(f"[dim]figures written to {out}[/]", highlight=False)
    if summary.lost:
        raise typer.Exit(1)


def _print(summary: RunSummary) -> None:
    p50, worst = (summary.latency_ms.get(k, math.nan) for k in ("p50", "max"))
    console.print(
        f"{summary.model}, {summary.method} on {summary.num_devices} local nodes: "
        f"{summary.answered}/{summary.images} images answered, Top-1 {_pct(summary.top1_pct)}, "
        f"{summary.fps:.1f} images/s, latency p50 {p50:.1f} ms (max {worst:.1f}); "
        f"timeout {summary.timeout_s:g} s, "
        f"heartbeat {summary.heartbeat_s:g} s, link {summary.link}",
        highlight=False,
    )
    segments = Table("images", "segment", "nodes down", "Top-1 %", "simulated Top-1 %")
    for s in summary.segments:
        down = "?" if s.failed is None else "+".join(map(str, s.failed)) or "none"
        simulated = "-" if s.simulated_top1_pct is None else _pct(s.simulated_top1_pct)
        segments.add_row(f"{s.first}-{s.last - 1}", s.label, down, _pct(s.top1_pct), simulated)
    console.print(segments)
    if summary.faults:
        faults = Table("fault", "at (s)", "detected after (s)", "back after (s)")
        for f in summary.faults:
            faults.add_row(f.fault, f"{f.at_s:.2f}", _s(f.detection_delay_s), _s(f.rejoin_delay_s))
        console.print(faults)
    nodes = Table(
        "node", "answered first", "answered", "sent / image", "peak RSS", "J / image",
        "dropped", "exit",
    )  # fmt: skip
    for n in summary.nodes:
        energy = "-" if n.energy_j_per_image is None else f"{n.energy_j_per_image:.4f}"
        nodes.add_row(
            str(n.rank), str(n.answered_first), str(n.images_answered),
            f"{n.bytes_sent_per_image / 1024:.1f} KiB",
            "-" if math.isnan(n.peak_rss_mb) else f"{n.peak_rss_mb:.0f} MiB",
            f"{energy} ({n.energy_source})" if n.energy_j_per_image is not None else "-",
            str(sum(n.drops.values())), n.exit + (f" ({n.lives} lives)" if n.lives > 1 else ""),
        )  # fmt: skip
    console.print(nodes)


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
