"""The `dse` command line: a thin layer over the library (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import optuna
import typer
from rich.markup import escape
from rich.table import Table
from typer.exceptions import TyperException

from dse._cli_deploy import deploy, verify
from dse._cli_measure import calibrate, measure
from dse._cli_options import (
    DEFAULT_STORAGE,
    DEFAULTS,
    INTERRUPTED_EXIT,
    BatchSizeOpt,
    CalibrationOpt,
    ClusteringOpt,
    ComputeDeviceOpt,
    DataOpt,
    DevicesOpt,
    ModelOpt,
    ScoresOpt,
    StorageOpt,
    StudyArg,
    TestSizeOpt,
    WeightsOpt,
    console,
    err_console,
)
from dse._cli_report import report
from dse._cli_run import run
from dse._cli_study import study_app
from dse._cli_timeout import timeout_study
from dse._compare import (
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    MATCHED_METHODS,
    ComparisonRequest,
    MethodResult,
    compare_methods,
)
from dse._objectives import OBJECTIVES, AccuracyMetric
from dse._optimize import writable_dir
from dse._optimize_view import Interrupted, front_table, optimize_view, profile_footnotes
from dse._pick import PICK_RULES
from dse._results import load_snapshot, pareto_payload
from dse._samplers import DEFAULT_SAMPLER, SAMPLERS
from dse._scales import THRESHOLD_SCALES
from dse._settings import StudySettings, check_devices, check_fail_prob
from dse._space import METHOD_CHOICES, TIE_MODES
from dse._study import stored_settings
from dse._workbench import open_workbench
from dse._workers import PARALLEL_SAMPLER, check_workers, default_sampler
from robustdice_core import InvalidParameterError, RobustDiceError
from robustdice_core.costs import (
    DEFAULT_IN_FLIGHT,
    Precision,
    device_profiles,
    link_profiles,
)
from robustdice_core.importance import SCORERS
from robustdice_core.io import atomic_write_bytes
from robustdice_core.partition import CLUSTERINGS, PARTITIONERS
from robustdice_core.zoo import MODELS

app = typer.Typer(
    name="dse",
    help="Failure-robust partitioning of CNNs over edge devices (RobustDiCE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_thresholds(text: str) -> list[float] | float:
    """``"0.3"`` -> 0.3 for every unit; ``"0.1,0.2,..."`` -> one per unit."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise InvalidParameterError(
            f"`--thresholds` must be numbers separated by commas, got {text!r}."
        ) from err
    if not values:
        raise InvalidParameterError("`--thresholds` needs at least one number.")
    return values[0] if len(values) == 1 else values


@app.command()
def models() -> None:
    """List the registered models."""
    table = Table(title="Models")
    for column in ("name", "family", "input", "classes", "description"):
        table.add_column(column)
    for name in MODELS.names():
        spec = MODELS.get(name)
        shape = "x".join(str(s) for s in spec.input_shape)
        table.add_row(name, spec.family, shape, str(spec.num_classes), spec.description)
    console.print(table)


@app.command()
def evaluate(
    model: ModelOpt = DEFAULTS.model,
    devices: DevicesOpt = DEFAULTS.devices,
    thresholds: Annotated[
        str | None,
        typer.Option(
            help="RobustDiCE threshold: one for all units, or one per unit (default 0.3; "
            "not with --replication)."
        ),
    ] = None,
    replication: Annotated[
        float | None,
        typer.Option(
            help="Compare at this replication factor (equal memory): RobustDiCE's thresholds "
            "and every method's copies are chosen to give it (docs/per_byte.md)."
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated, from: {', '.join(PARTITIONERS.names())} (default: "
            f"{','.join(DEFAULT_METHODS)}; with --replication: {','.join(MATCHED_METHODS)})."
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="Seeds per random control (reported as the mean over seeds).")
    ] = DEFAULT_SEEDS,
    copies: Annotated[
        int, typer.Option(help="Budgeted: copies of a protected neuron (k+1 survives k).")
    ] = 2,
    scores: ScoresOpt = ",".join(DEFAULTS.scores),
    clustering: ClusteringOpt = DEFAULTS.clustering,
    fail_prob: Annotated[
        float, typer.Option(help="Per-device failure probability for the expected Top-1.")
    ] = DEFAULTS.fail_prob,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    calibration_size: CalibrationOpt = None,
    test_size: TestSizeOpt = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    device: ComputeDeviceOpt = str(DEFAULTS.device),
    batch_size: BatchSizeOpt = None,
) -> None:
    """Top-1 under k failed devices: RobustDiCE vs LOP, CDC and full replication (and, with
    --methods or --replication, the controls and the budgeted allocator at equal memory)."""
    check_devices(devices, range(devices))
    check_fail_prob(fail_prob)
    CLUSTERINGS.get(clustering)
    score_names = SCORERS.parse_list(scores, "--scores")
    method_names = None if methods is None else PARTITIONERS.parse_list(methods, "--methods")
    if json_out is not None:
        _check_json_path(json_out)
    if replication is not None and thresholds is not None:
        raise InvalidParameterError("give either `--thresholds` or `--replication`, not both.")
    threshold_values = None if replication is not None else parse_thresholds(thresholds or "0.3")
    # the comparison's own checks, before the model is loaded
    ComparisonRequest(devices, threshold_values, replication, clustering, seeds, copies)
    with console.status(f"loading {model}, its data and importance scores ({scores})..."):
        bench = open_workbench(
            model,
            weights=weights,
            data=data,
            score_names=score_names,
            calibration_size=calibration_size,
            test_size=test_size,
            device=device,
            batch_size=batch_size,
        )
    with console.status(f"evaluating all failure sets of {devices} devices..."):
        results = compare_methods(
            bench,
            devices,
            threshold_values,
            clustering=clustering,
            methods=method_names,
            replication=replication,
            seeds=seeds,
            copies=copies,
        )
    test = bench.require_data().test
    matched = "" if replication is None else f" at replication factor {replication:g}"
    title = (
        f"{model} on {devices} devices{matched}, {len(test)} test images "
        f"({bench.require_data().name}); Top-1 % worst / mean / best over failure sets"
    )
    console.print(_results_table(results, devices, fail_prob, title))
    if json_out is not None:
        payload = {
            "model": model,
            "weights": bench.model.weights_source,
            "devices": devices,
            "test_images": len(test),
            "scores": list(bench.score_names),
            "replication_target": replication,
            "results": [r.to_dict(fail_prob) for r in results],
        }
        atomic_write_bytes(json_out, json.dumps(payload, indent=2).encode())
        console.print(f"results written to {json_out}")


def _check_json_path(path: Path) -> None:
    """Before any work: the file's folder exists and takes a file, and it is no folder."""
    if not path.parent.is_dir():
        raise InvalidParameterError(f"`--json`: folder `{path.parent}` does not exist.")
    if path.is_dir():
        raise InvalidParameterError(f"`--json`: `{path}` is a folder; name a file in it.")
    writable_dir(path.parent, "--json")


def _results_table(
    results: list[MethodResult], devices: int, fail_prob: float, title: str
) -> Table:
    table = Table(title=title)
    table.add_column("method")
    table.add_column("repl.", justify="right")
    table.add_column("k=0", justify="right")
    for k in range(1, devices):
        table.add_column(f"k={k} failed", justify="right")
    table.add_column(f"E[Top-1] p={fail_prob:g}", justify="right")
    for result in results:
        acc = result.accuracy
        cells = [f"{acc.by_size(0).mean * 100:.1f}"]
        for k in range(1, devices):
            stats = acc.by_size(k)
            cells.append(
                f"{stats.worst * 100:.1f} / {stats.mean * 100:.1f} / {stats.best * 100:.1f}"
            )
        seeded = f" (mean of {len(result.partitions)} seeds)" if len(result.partitions) > 1 else ""
        table.add_row(
            result.label + seeded,
            f"{result.replication_factor:.3f}",
            *cells,
            f"{acc.expected(fail_prob) * 100:.1f}",
        )
    return table


def _choices(names: list[str]) -> str:
    return ", ".join(names)


@app.command()
def optimize(
    model: ModelOpt = DEFAULTS.model,
    devices: DevicesOpt = DEFAULTS.devices,
    objectives: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {_choices(OBJECTIVES.names())}.")
    ] = ",".join(DEFAULTS.objectives),
    acc_metric: Annotated[
        str, typer.Option(help=f"One of: {_choices([m.value for m in AccuracyMetric])}.")
    ] = DEFAULTS.acc_metric.value,
    failures: Annotated[
        str, typer.Option(help="Numbers of failed devices the acc objective covers, e.g. 1,2.")
    ] = ",".join(map(str, DEFAULTS.failures)),
    fail_prob: Annotated[
        float, typer.Option(help="Per-device failure probability (acc-metric expected).")
    ] = DEFAULTS.fail_prob,
    trials: Annotated[int, typer.Option(help="Completed trials the study should have.")] = 100,
    sampler: Annotated[
        str | None,
        typer.Option(
            help=f"One of: {_choices(SAMPLERS.names())} (docs/dse.md); default: "
            f"{DEFAULT_SAMPLER}, or {PARALLEL_SAMPLER} (constant liar) with --workers > 1; an "
            "existing --study keeps its own."
        ),
    ] = None,
    population: Annotated[
        int, typer.Option(help="Population size (NSGA samplers).")
    ] = DEFAULTS.population,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = DEFAULTS.seed,
    tie: Annotated[
        str, typer.Option(help=f"Tie thresholds across units: {_choices(TIE_MODES.names())}.")
    ] = DEFAULTS.tie,
    threshold_range: Annotated[
        str | None,
        typer.Option(help="LOW,HIGH for every threshold (default: 0 to one cluster per unit)."),
    ] = None,
    scores: ScoresOpt = ",".join(DEFAULTS.scores),
    clustering: ClusteringOpt = DEFAULTS.clustering,
    method: Annotated[
        str,
        typer.Option(
            help=f"What a trial searches: {_choices(METHOD_CHOICES.names())} (robustdice: "
            "per-unit thresholds; budgeted: per-unit fractions of neurons given extra copies; "
            "graded: per-unit copy levels from LOP to full replication, filled by importance; "
            "both: robustdice or budgeted, each trial draws its method; docs/per_byte.md)."
        ),
    ] = DEFAULTS.method,
    threshold_scale: Annotated[
        str,
        typer.Option(
            help=f"How thresholds are searched: {_choices(THRESHOLD_SCALES.names())} (linear: "
            "0 to one cluster; quantile: per unit, through its merge heights, so large units "
            "replicate too; docs/dse.md)."
        ),
    ] = DEFAULTS.threshold_scale,
    device_profile: Annotated[
        str, typer.Option(help=f"Device profile name ({_choices(device_profiles())}) or .toml.")
    ] = DEFAULTS.device_profile,
    link_profile: Annotated[
        str, typer.Option(help=f"Link profile name ({_choices(link_profiles())}) or .toml.")
    ] = DEFAULTS.link_profile,
    dtype: Annotated[
        str, typer.Option(help=f"Weights/activations: {_choices([p.value for p in Precision])}.")
    ] = DEFAULTS.dtype.value,
    schedule: Annotated[
        str,
        typer.Option(
            help="Runtime schedule the fps and energy objectives assume: barrier (one image at "
            "a time) or overlapped (several in flight, as `dse run`; docs/cost_model.md)."
        ),
    ] = DEFAULTS.schedule.value,
    in_flight: Annotated[
        int | None,
        typer.Option(
            help=f"Images in flight with --schedule overlapped (default {DEFAULT_IN_FLIGHT})."
        ),
    ] = None,
    max_mem_mb: Annotated[
        float | None, typer.Option(help="Constraint: max MB per device, runtime included.")
    ] = None,
    min_fps: Annotated[float | None, typer.Option(help="Constraint: minimum FPS.")] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: derived from the settings).")
    ] = None,
    storage: Annotated[
        str, typer.Option(help="Optuna storage URL or journal .log file.")
    ] = DEFAULT_STORAGE,
    out: Annotated[Path, typer.Option(help="Folder for CSV/Parquet exports.")] = Path("dse-runs"),
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes running trials (a journal file or database storage); the "
            "same command on other machines joins the study (docs/dse.md, Scale out)."
        ),
    ] = 1,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    calibration_size: CalibrationOpt = None,
    test_size: TestSizeOpt = None,
    racing: Annotated[
        float | None,
        typer.Option(
            help="Race each trial on this share of the test images first (e.g. 0.2) and "
            "finish only trials that could still reach the front (docs/dse.md, Racing)."
        ),
    ] = None,
    device: ComputeDeviceOpt = str(DEFAULTS.device),
    batch_size: BatchSizeOpt = None,
) -> None:
    """Search per-unit thresholds for the Pareto front of robustness vs. per-device cost."""

    if trials < 1:
        raise InvalidParameterError(f"`--trials` must be at least 1, got {trials}.")
    check_workers(workers, storage)
    if sampler is None:
        existing = stored_settings(storage, study) if study is not None else None
        sampler = existing.sampler if existing is not None else default_sampler(workers)
    settings = StudySettings.parse(
        model=model,
        devices=devices,
        objectives=objectives,
        acc_metric=acc_metric,
        failures=failures,
        fail_prob=fail_prob,
        scores=scores,
        tie=tie,
        threshold_range=threshold_range,
        clustering=clustering,
        method=method,
        threshold_scale=threshold_scale,
        device_profile=device_profile,
        link_profile=link_profile,
        dtype=dtype,
        schedule=schedule,
        in_flight=in_flight,
        max_mem_mb=max_mem_mb,
        min_fps=min_fps,
        sampler=sampler,
        population=population,
        seed=seed,
        weights=weights,
        data=data,
        calibration_size=calibration_size,
        test_size=test_size,
        racing=racing,
        device=device,
        batch_size=batch_size,
    )
    optimize_view(
        console, settings, trials=trials, storage=storage, study=study, out=out, workers=workers
    )


@app.command()
def pareto(
    study: StudyArg = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    pick: Annotated[
        str | None,
        typer.Option(help=f"Choose one trial: {_choices(PICK_RULES.names())} (docs/dse.md)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the front (and the pick) as JSON.")
    ] = False,
) -> None:
    """Print a study's Pareto front; `--pick RULE` chooses one trial and prints its number."""
    if pick is not None:
        PICK_RULES.get(pick)
    snapshot = load_snapshot(storage, study)
    chosen = snapshot.pick(pick) if pick is not None else None
    if as_json:
        typer.echo(json.dumps(pareto_payload(snapshot, chosen, pick), indent=2))
        return
    specs = snapshot.settings.objective_specs
    console.print(front_table(specs, snapshot.front, snapshot.baselines, snapshot.front_change()))
    for line in profile_footnotes(snapshot.settings):
        console.print(f"[dim]{line}[/]", highlight=False)
    console.print(f"study `{snapshot.name}` in {storage}: {len(snapshot.trials)} trials")
    if chosen is not None and pick is not None:
        console.print(f"{pick}: trial {chosen.number}")


app.command()(deploy)
app.command()(verify)
app.command()(report)
app.command()(run)
app.command()(measure)
app.command()(calibrate)
app.command()(timeout_study)
app.add_typer(study_app, name="study")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    # Our display reports trials and failures; Optuna's per-trial warnings (a traceback for a
    # trial cut by Ctrl-C) would bury it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        code = app(standalone_mode=False)
    except Interrupted as err:
        err_console.print(f"[yellow]{escape(str(err))}[/]", highlight=False)
        sys.exit(INTERRUPTED_EXIT)
    except RobustDiceError as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted.")
        sys.exit(INTERRUPTED_EXIT)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except TyperException as err:  # usage errors: unknown command, bad option value
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {escape(err.format_message())}", highlight=False)
        sys.exit(err.exit_code or 2)
    if code == INTERRUPTED_EXIT:  # typer turns Ctrl-C into this return value
        err_console.print("interrupted.")
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
