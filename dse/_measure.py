"""`dse measure`: run a study's trials (and its baselines) on the local runtime and store what
was measured beside what was estimated.

Each chosen trial is deployed as a bundle (`dse._deploy.deploy`, the same partition checks as
`dse deploy`) in a temporary folder and run by `runtime.run_local` on its ND nodes as local
processes, with the study's link profile emulated by the nodes. The run's FPS, latency, the
largest node's peak RSS and, where a real meter read it, energy go into a `Measurement`
(with the run's provenance and the cost model's figures for the same partition), saved in the
study's user attributes (`Measurement.attr_key`; Optuna never updates a finished trial).
`--json` also writes every measurement with its partition: the input of `dse calibrate`.
"""

from __future__ import annotations

import json
import math
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from dse._deploy import deploy
from dse._problem import RobustnessProblem
from dse._results import Measurement, StudySnapshot, load_snapshot
from dse._study import StudyLock, open_storage
from dse._workbench import Workbench
from robustdice_core import BASELINES, CorruptFileError, InvalidParameterError, Partition
from robustdice_core.costs import CostEstimate, Schedule
from robustdice_core.io import atomic_write_bytes
from runtime import LaunchOptions, RunSummary, run_local

__all__ = [
    "MEASUREMENTS_FORMAT",
    "MeasureResult",
    "MeasuredEntry",
    "bench_images",
    "measure_study",
    "measured_resources",
    "parse_trials",
    "read_measurements",
]

MEASUREMENTS_FORMAT = "robustdice-measurements/1"
PARETO = "pareto"


@dataclass(frozen=True)
class MeasuredEntry:
    """A measurement and the partition it ran (what `dse calibrate` fits on)."""

    measurement: Measurement
    partition: Partition


@dataclass(frozen=True)
class MeasureResult:
    study: str
    storage: str
    model: str
    settings: dict[str, Any]  # devices, profiles, dtype: what the estimates assumed
    entries: tuple[MeasuredEntry, ...]
    json_path: Path | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MEASUREMENTS_FORMAT,
            "study": self.study,
            "storage": self.storage,
            "model": self.model,
            **self.settings,
            "entries": [
                {"measurement": e.measurement.to_dict(), "partition": e.partition.to_dict()}
                for e in self.entries
            ],
        }


def parse_trials(text: str) -> str | tuple[int, ...]:
    """``pareto`` or a comma-separated list of trial numbers."""
    if text.strip() == PARETO:
        return PARETO
    try:
        numbers = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InvalidParameterError(
            f"`--trials` must be `pareto` or trial numbers like `3,7,12`, got {text!r}."
        ) from None
    if not numbers or min(numbers) < 0:
        raise InvalidParameterError(
            f"`--trials` must be `pareto` or non-negative trial numbers, got {text!r}."
        )
    return numbers


def measure_study(
    storage_url: str,
    study_name: str | None,
    *,
    trials: str | Sequence[int] = PARETO,
    baselines: bool = True,
    images: int = 64,
    in_flight: int = 4,
    emulate_link: bool = True,
    json_path: Path | None = None,
    on_start: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> MeasureResult:
    """Measure the chosen trials (``"pareto"``: the feasible front) and the baselines.

    Refused while another process runs the study (its `StudyLock`); the lock is held until the
    last measurement is saved, so an optimize run cannot start in between. Each measurement
    is saved (and the ``json_path`` file rewritten) as soon as it is taken.
    """
    start = time.perf_counter()
    _check_counts(images, in_flight)
    if json_path is not None:
        _check_json_path(json_path)
    snapshot = load_snapshot(storage_url, study_name)
    subjects = _subjects(snapshot, trials, baselines)
    lock = StudyLock.for_study(storage_url, snapshot.name)
    if lock is not None and not lock.exclusive():
        lock.release()
        raise InvalidParameterError(
            f"study `{snapshot.name}` is being run by `dse optimize` (lock `{lock.path}`); "
            "measure it once that run has ended."
        )
    try:
        problem = RobustnessProblem(snapshot.settings)
        inputs = bench_images(problem.bench, images)
        options = LaunchOptions(in_flight=in_flight)
        link = snapshot.settings.link_profile if emulate_link else None
        entries: list[MeasuredEntry] = []
        for subject in subjects:
            if on_start is not None:
                on_start(subject)
            entry = _measure_one(snapshot, problem, subject, inputs, options, link, clock)
            entries.append(_noted(entry, snapshot))
            # saved one by one: a later run that fails keeps the earlier ones
            _save(storage_url, snapshot.name, [entries[-1].measurement])
            result = _result(snapshot, entries, json_path, time.perf_counter() - start)
            if json_path is not None:
                text = json.dumps(result.to_dict(), indent=1, allow_nan=False)
                atomic_write_bytes(json_path, (text + "\n").encode())
    finally:
        if lock is not None:
            lock.release()
    return result


def _result(
    snapshot: StudySnapshot,
    entries: Sequence[MeasuredEntry],
    json_path: Path | None,
    seconds: float,
) -> MeasureResult:
    settings = snapshot.settings
    return MeasureResult(
        study=snapshot.name,
        storage=snapshot.storage_url,
        model=settings.model,
        settings={
            "devices": settings.devices,
            "device_profile": settings.device_profile,
            "link_profile": settings.link_profile,
            "dtype": settings.dtype.value,
        },
        entries=tuple(entries),
        json_path=json_path,
        seconds=seconds,
    )


def _check_counts(images: int, in_flight: int) -> None:
    if images < 1:
        raise InvalidParameterError(f"`--images` must be at least 1, got {images}.")
    if in_flight < 1:
        raise InvalidParameterError(f"`--in-flight` must be at least 1, got {in_flight}.")


def _check_json_path(path: Path) -> None:
    if path.is_dir() or not path.parent.is_dir():
        raise InvalidParameterError(
            f"`--json` must name a file in an existing folder, got `{path}`."
        )


def _subjects(snapshot: StudySnapshot, trials: str | Sequence[int], baselines: bool) -> list[str]:
    """``trial:<n>`` for each chosen trial, then ``baseline:<name>`` for each baseline."""
    if not any(t.state == TrialState.COMPLETE for t in snapshot.trials):
        raise InvalidParameterError(
            f"study `{snapshot.name}` has no completed trials yet; run `dse optimize` first."
        )
    if trials == PARETO:
        if not snapshot.front:
            raise InvalidParameterError(
                f"study `{snapshot.name}` has no feasible trial on its front to measure; "
                "name trials with `--trials 3,7`."
            )
        numbers = [t.number for t in snapshot.front]
    else:
        numbers = list(dict.fromkeys(int(n) for n in trials))
        for number in numbers:
            if snapshot.trial(number).state != TrialState.COMPLETE:
                raise InvalidParameterError(
                    f"trial {number} of study `{snapshot.name}` is "
                    f"{snapshot.trial(number).state.name}; only COMPLETE trials can be measured."
                )
    chosen = [f"trial:{n}" for n in numbers]
    if baselines:
        chosen += [f"baseline:{name}" for name in snapshot.baselines if name in BASELINES]
    return chosen


def bench_images(bench: Workbench, count: int) -> torch.Tensor:
    """The bench's test images, or seeded random inputs (FPS and memory need no labels)."""
    if bench.data is not None:
        return bench.data.test.images[:count]
    generator = torch.Generator().manual_seed(0)
    return torch.randn((count, *bench.model.spec.input_shape), generator=generator)


def _measure_one(
    snapshot: StudySnapshot,
    problem: RobustnessProblem,
    subject: str,
    inputs: torch.Tensor,
    options: LaunchOptions,
    link: str | None,
    clock: Callable[[], datetime] | None,
) -> MeasuredEntry:
    kind, name = subject.split(":", 1)
    choice: dict[str, Any] = {"trial": int(name)} if kind == "trial" else {"method": name}
    with tempfile.TemporaryDirectory(prefix="robustdice-measure-") as tmp:
        deployed = deploy(
            snapshot.storage_url,
            snapshot.name,
            out=Path(tmp) / "bundle",
            local=True,
            force=True,  # an infeasible trial or baseline is measured as it is
            problem=problem,
            **choice,
        )
        summary, stream = run_local(
            deployed.out, inputs, None, options=options, simulate=False, link=link
        )
    partition = deployed.manifest.partition
    expected = deployed.manifest.expected
    costs = expected.costs if expected is not None else None
    measurement = _measurement(subject, summary, stream.latency_s[stream.answered_by >= 0], clock)
    estimated = _estimated(problem, partition, costs, options.in_flight)
    return MeasuredEntry(replace(measurement, estimated=estimated), partition)


def measured_resources(summary: RunSummary) -> tuple[float | None, float | None, str]:
    """The largest node's peak RSS (MB) and measured J/image, and the energy's source: only a
    real meter's reading counts (``measured:*``), never the cost model's stand-in."""
    rss = [n.peak_rss_mb for n in summary.nodes if not math.isnan(n.peak_rss_mb)]
    measured = [
        (n.energy_j_per_image, n.energy_source)
        for n in summary.nodes
        if n.energy_j_per_image is not None and n.energy_source.startswith("measured:")
    ]
    source = ", ".join(sorted({s for _, s in measured})) or "not measured (no energy meter here)"
    energy = max((e for e, _ in measured), default=None)
    return max(rss, default=None), energy, source


def _measurement(
    subject: str,
    summary: RunSummary,
    latency_s: np.ndarray,
    clock: Callable[[], datetime] | None,
) -> Measurement:
    if latency_s.size == 0:
        raise InvalidParameterError(
            f"{subject.replace(':', ' ')} answered none of {summary.images} images on the local "
            "runtime; see `dse run --local` for what went wrong."
        )
    notes = (
        (
            f"lost {summary.lost} of {summary.images} images (not answered in time); FPS and "
            "latency count the answered ones",
        )
        if summary.lost
        else ()
    )
    rss, energy, source = measured_resources(summary)
    now = (clock or (lambda: datetime.now(timezone.utc)))()
    return Measurement(
        subject=subject,
        fps=float(summary.fps),
        latency_median_s=float(np.median(latency_s)),
        latency_p90_s=float(np.percentile(latency_s, 90)),
        peak_rss_mb=rss,
        energy_j=energy,
        energy_source=source,
        estimated={},
        link=summary.link,
        images=summary.images,
        in_flight=summary.in_flight,
        num_devices=summary.num_devices,
        host=platform.node() or "unknown host",
        date=now.isoformat(timespec="seconds"),
        tool_version=_version(),
        notes=notes,
        lost=summary.lost,
    )


def _estimated(
    problem: RobustnessProblem,
    partition: Partition,
    costs: CostEstimate | None,
    in_flight: int,
) -> dict[str, float]:
    """The cost model's figures for the partition: both schedules (docs/cost_model.md)."""
    overlapped = problem.estimate(partition, Schedule.OVERLAPPED, in_flight)
    barrier = costs
    if barrier is None or barrier.schedule is not Schedule.BARRIER:
        barrier = problem.estimate(partition, Schedule.BARRIER)
    return {
        "fps": barrier.fps,
        "fps_overlapped": overlapped.fps,
        "latency_s": barrier.latency_s,
        "max_memory_mb": barrier.max_memory_mb,
        "max_partition_memory_mb": barrier.max_partition_memory_mb,
        "max_energy_j": barrier.max_energy_j,
        "max_energy_j_overlapped": overlapped.max_energy_j,
    }


def _version() -> str:
    try:
        return metadata.version("robustdice-dse")
    except metadata.PackageNotFoundError:
        return "unknown"


def _noted(entry: MeasuredEntry, snapshot: StudySnapshot) -> MeasuredEntry:
    """A re-measurement replaces the earlier one, and says so."""
    earlier = snapshot.measurements.get(entry.measurement.subject)
    if earlier is None:
        return entry
    m = entry.measurement
    note = f"replaces the measurement of {earlier.date} ({earlier.fps:.4g} FPS)"
    return replace(entry, measurement=replace(m, notes=(*m.notes, note)))


def _save(storage_url: str, name: str, measurements: Sequence[Measurement]) -> None:
    """One study attribute per subject: each write is atomic in every Optuna storage."""
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    for m in measurements:
        study.set_user_attr(m.attr_key, m.to_dict())


def read_measurements(path: Path) -> dict[str, Any]:
    """A `dse measure --json` file, checked for its format."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidParameterError(
            f"`{path}` does not exist; write it with `dse measure --json`."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"`{path}` is not a measurements file: {err}.") from None
    if not isinstance(data, dict) or data.get("format") != MEASUREMENTS_FORMAT:
        raise CorruptFileError(
            f"`{path}` is not a `dse measure --json` file (format `{MEASUREMENTS_FORMAT}`)."
        )
    return data
