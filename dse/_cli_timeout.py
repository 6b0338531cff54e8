"""`dse timeout-study BUNDLE`: latency per image against the failure detector's timeout with
one node killed, beside the no-failure latency (the paper's Fig. 3); a thin layer over
`dse._timeout_study`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dse._cli_options import console
from dse._timeout_page import study_settings, write_timeout_page
from dse._timeout_study import (
    DEFAULT_TIMEOUTS_S,
    TimeoutPoint,
    TimeoutStudy,
    check_fail_rank,
    log_timeouts,
    parse_timeouts,
    resolve_link,
    run_timeout_study,
)
from robustdice_core import InvalidParameterError
from robustdice_core.bundle import read_manifest
from robustdice_core.zoo import MODELS

__all__ = ["timeout_study"]


def timeout_study(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (`dse deploy --out`).")],
    timeouts: Annotated[
        str | None,
        typer.Option(help="Timeouts in s, comma-separated (default: 10 us ... 30 ms, 11)."),
    ] = None,
    points: Annotated[
        int | None, typer.Option(help="Instead: this many log-spaced timeouts, 10 us-30 ms.")
    ] = None,
    images: Annotated[int, typer.Option(help="Images per stream (test split).")] = 150,
    fail: Annotated[int, typer.Option(help="The node killed (rank).")] = 1,
    fail_at: Annotated[
        int | None, typer.Option(help="Killed just before this image (default: half way).")
    ] = None,
    in_flight: Annotated[int, typer.Option(help="Images in flight at once.")] = 1,
    link: Annotated[
        str | None,
        typer.Option(help="Emulated link: a profile name or .toml path (default: loopback)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the CSV/HTML/JSON (default BUNDLE.timeout).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the study as JSON instead of a table.")
    ] = False,
) -> None:
    """Latency per image and Top-1 against the timeout, one node killed (paper Fig. 3)."""
    if timeouts is not None and points is not None:
        raise InvalidParameterError("pass `--timeouts` or `--points`, not both.")
    grid = (
        parse_timeouts(timeouts)
        if timeouts is not None
        else log_timeouts(points)
        if points is not None
        else DEFAULT_TIMEOUTS_S
    )
    manifest = read_manifest(bundle)
    check_fail_rank(manifest.num_devices, fail)
    if images < 2:
        raise InvalidParameterError(f"`--images` must be at least 2, got {images}.")
    if fail_at is not None and not 0 <= fail_at < images:
        raise InvalidParameterError(
            f"`--fail-at` must be an image before the last of `--images` ({images}), got "
            f"{fail_at}."
        )
    if in_flight < 1:
        raise InvalidParameterError(f"`--in-flight` must be at least 1, got {in_flight}.")
    profile = resolve_link(link)
    folder = out or bundle.with_name(f"{bundle.name}.timeout")
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(f"`--out`: `{folder}` is a file; name a folder.")
    test = MODELS.get(manifest.model).eval_data(None, calibration_size=None, test_size=images)
    test_split = test.test
    with console.status("streaming...") as status:
        study = run_timeout_study(
            bundle, test_split.images, test_split.labels, timeouts_s=grid, fail_rank=fail,
            fail_at=fail_at, in_flight=in_flight, link=profile,
            progress=lambda message: status.update(message),
        )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        study.write_csv(folder / "timeout_study.csv"),
        write_timeout_page(study, folder / "timeout_study.html"),
        study.write_json(folder / "timeout_study.json"),
    ]
    if as_json:
        typer.echo(json.dumps(study.to_dict(), indent=1))
        return
    _print(study)
    console.print(f"[dim]written: {', '.join(map(str, files))}[/]", highlight=False)


def _print(study: TimeoutStudy) -> None:
    for line in study_settings(study):
        console.print(f"[dim]{line}[/]", highlight=False)
    table = Table(
        "timeout", "heartbeat", "p50 ms", "p90 ms", "max ms", "FPS", "Top-1 %", "sim. %",
        "= sim.", "transient", "false downs", "lost",
    )  # fmt: skip
    for p in (study.baseline, *study.points):
        table.add_row(*_cells(p, p is study.baseline))
    console.print(table)


def _cells(p: TimeoutPoint, baseline: bool) -> list[str]:
    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.1f}"

    label = seconds(p.timeout_s) + (" (no failure)" if baseline else "")
    return [
        label, seconds(p.heartbeat_s), ms(p.latency_p50_ms), ms(p.latency_p90_ms),
        ms(p.latency_max_ms), f"{p.fps:.1f}", ms(p.top1_pct), ms(p.simulated_top1_pct),
        f"{p.matching_simulation}/{p.answered}", str(p.transient_images), str(p.false_downs),
        str(p.lost),
    ]  # fmt: skip


def seconds(value: float) -> str:
    """``2e-05`` -> ``20 us``, ``0.03`` -> ``30 ms``, ``1.0`` -> ``1 s``."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e6:.3g} us"
