"""The one runner: check the request, compute the study, write its CSV, HTML and JSON."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustdice_core import InvalidParameterError
from robustdice_core.io import atomic_write_bytes
from studies._kinds import KINDS, Progress, StudyKind, quiet
from studies._page import render_page
from studies._plan import ModelRun, StudyRequest, plan_runs
from studies._prepare import default_jobs, prepare_runs
from studies._result import StudyData
from studies._spec import STUDIES, StudySpec, StudyUnavailableError

__all__ = ["StudyOutcome", "default_out", "run_study", "study_status"]


@dataclass(frozen=True)
class StudyOutcome:
    """A finished study: what it computed and the files it wrote."""

    spec: StudySpec
    runs: tuple[ModelRun, ...]
    data: StudyData
    files: tuple[Path, ...]
    elapsed_s: float


def default_out(spec: StudySpec) -> Path:
    return Path("dse-runs") / f"study-{spec.name}"


def study_status(spec: StudySpec) -> str | None:
    """None when ``spec`` can run here, else what it still needs."""
    kind: StudyKind[Any] = KINDS.get(spec.kind)
    return kind.unavailable(spec)


def run_study(
    study: str | StudySpec,
    request: StudyRequest | None = None,
    *,
    out: Path | None = None,
    progress: Progress = quiet,
    jobs: int | None = None,
) -> StudyOutcome:
    """Run a registered study (or a spec) and write ``<name>.csv``, ``<name>.html`` and
    ``<name>.json`` (plus ``<name>_runs.csv`` with per-seed rows where the table aggregates
    them) into ``out`` (default ``dse-runs/study-<name>``). ``jobs`` models are trained and
    scored at a time (default: one per core, at most 4).

    Raises:
        StudyUnavailableError: the study needs a part of the project that is not built yet.
        RobustDiceError: a bad model, seed, weights, data or output choice (checked before
            any work starts).
    """
    spec = STUDIES.get(study) if isinstance(study, str) else study
    missing = study_status(spec)
    if missing is not None:
        raise StudyUnavailableError(f"study `{spec.name}` {missing}.")
    request = request or StudyRequest()
    if jobs is not None and jobs < 1:
        raise InvalidParameterError(f"`--jobs` must be at least 1, got {jobs}.")
    spec = request.applied_to(spec)
    runs = plan_runs(spec, request)
    folder = out if out is not None else default_out(spec)
    _check_out(folder)
    started = time.perf_counter()
    kind: StudyKind[Any] = KINDS.get(spec.kind)
    ahead = kind.preparation(spec)
    if ahead is not None:
        jobs = default_jobs() if jobs is None else jobs
        prepare_runs(runs, spec, ahead.scores, progress, jobs=jobs, need=ahead.need_accuracy)
    data = kind.compute(spec, runs, progress)
    figures = kind.figures(spec, data)
    elapsed = time.perf_counter() - started
    page = render_page(spec, data, figures, elapsed_s=elapsed)
    files = _write(folder, spec, request, runs, data, page, elapsed)
    return StudyOutcome(spec, runs, data, files, elapsed)


def _check_out(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(f"`--out`: `{folder}` is a file; name a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidParameterError(f"`--out`: cannot create folder `{folder}` ({err}).") from err


def _write(
    folder: Path,
    spec: StudySpec,
    request: StudyRequest,
    runs: tuple[ModelRun, ...],
    data: StudyData,
    page: str,
    elapsed: float,
) -> tuple[Path, ...]:
    files = {folder / f"{spec.name}.csv": data.table.to_csv(index=False)}
    if data.details is not None:
        files[folder / f"{spec.name}_runs.csv"] = data.details.to_csv(index=False)
    files[folder / f"{spec.name}.html"] = page
    meta = {
        "study": spec.name,
        "paper": spec.paper,
        "spec": _jsonable(asdict(spec)),
        "request": _jsonable(asdict(request)),
        "runs": [_jsonable(asdict(run)) for run in runs],
        "sources": [s.to_dict() for s in data.sources],
        "provenance": list(data.provenance),
        "findings": [f.to_dict() for f in data.findings],
        "notes": list(data.notes),
        "elapsed_s": elapsed,
    }
    files[folder / f"{spec.name}.json"] = json.dumps(meta, indent=2)
    for path, text in files.items():
        atomic_write_bytes(path, text.encode("utf-8"))
    return tuple(files)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
