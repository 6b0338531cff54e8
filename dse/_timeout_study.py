"""The timeout study (the paper's Fig. 3): latency per image against the failure detector's
timeout, with one device killed mid-stream, beside the no-failure latency.

Each timeout is one `runtime.run_local` stream of the same images on the bundle's nodes
(local processes): the first ``fail_at`` images (half by default) run with every node up,
then node ``fail_rank`` is SIGKILLed and the rest stream without it. The first half is each
stream's own no-failure reference, under the same timeout and the same machine load. The
heartbeat interval is ``timeout / heartbeat_divisor`` (5, the runtime's default ratio 1 s /
0.2 s), since a node must beat more often than its peers' timeout. The baseline streams the
same images with no fault at the bundle's own timings.

Images after the kill are split by when they were sent: *transient* before the last survivor
marked the killed node down (their syncs may wait up to one timeout for it), *steady* after.
Every answer is also compared with the failure simulation (DESIGN 3.5) for the killed node
alone: an answer that differs was computed with some other, live peer missing too (a false
detection or a data wait that timed out) or mid-detection.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from robustdice_core import InvalidParameterError
from robustdice_core.bundle import read_manifest, read_runtime, reassemble
from robustdice_core.costs import LinkProfile, load_link_profile
from robustdice_core.io import atomic_write_bytes
from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import trace_model
from robustdice_core.zoo import MODELS
from runtime import Fault, FaultKind, LaunchOptions, RunSummary, StreamResult, run_local
from runtime import simulated_logits as simulate

__all__ = [
    "DEFAULT_TIMEOUTS_S",
    "HEARTBEAT_DIVISOR",
    "MAX_TIMEOUT_S",
    "MIN_TIMEOUT_S",
    "TimeoutPoint",
    "TimeoutStudy",
    "check_fail_rank",
    "check_timeouts",
    "log_timeouts",
    "parse_timeouts",
    "resolve_link",
    "run_timeout_study",
]

MIN_TIMEOUT_S = 1e-5  # the paper's range: 10 us ...
MAX_TIMEOUT_S = 1.0  # ... 30 ms; up to 1 s allowed (the runtime's default is 0.5 s)
# the paper's range on a 1-2-5 grid, with its two quoted points (500 us and 30 ms)
DEFAULT_TIMEOUTS_S = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 3e-2)
HEARTBEAT_DIVISOR = 5.0
IMAGE_TIMEOUT_FLOOR_S = 3.0  # the client's wait for one answer (10 x the slowest seen here)
MATCH_ATOL = 1e-4  # logits equal to the simulation's (the runtime's equivalence tolerance)

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """A progress sink that shows nothing."""


@dataclass(frozen=True)
class TimeoutPoint:
    """One stream: a timeout with node ``failed`` killed (or the no-failure baseline).

    Latency (ms, send to first answer) and Top-1 cover the images from the kill on (the
    baseline: the same images); ``fps`` = those images answered / the seconds they took.
    """

    scenario: str  # "1 failed" or "no failure"
    timeout_s: float
    heartbeat_s: float
    failed: int | None
    images: int
    answered: int
    lost: int
    latency_p50_ms: float
    latency_p90_ms: float
    latency_max_ms: float
    latency_mean_ms: float
    fps: float
    top1_pct: float  # measured: lost images count as wrong
    simulated_top1_pct: float  # the failure simulation for the same failed set and images
    matching_simulation: int  # answers equal to that simulation (within MATCH_ATOL)
    before_p50_ms: float  # the same stream before the kill (same timeout, same load)
    before_mean_ms: float
    before_top1_pct: float
    transient_images: int  # sent before every survivor marked the killed node down
    transient_max_ms: float
    steady_p50_ms: float
    steady_max_ms: float
    detection_s: float | None  # kill -> the last survivor's DOWN for the killed node
    false_downs: int  # DOWN events for live peers, over every survivor
    absent_waits: int  # (image, peer) pairs zero-filled after a data timeout, all nodes
    unadmitted: int  # images a node left to the others (peers counted it down)
    link: str


@dataclass(frozen=True)
class TimeoutStudy:
    """The sweep and its baseline, with what was run."""

    bundle: str
    model: str
    method: str
    num_devices: int
    failed: int
    fail_at: int
    images: int
    in_flight: int
    heartbeat_divisor: float
    link: str
    baseline: TimeoutPoint
    points: tuple[TimeoutPoint, ...]

    def rows(self) -> list[dict[str, Any]]:
        """One row per stream, baseline first, with the study's settings."""
        shared = {
            "model": self.model,
            "method": self.method,
            "devices": self.num_devices,
            "fail_at": self.fail_at,
            "in_flight": self.in_flight,
        }
        return [{**shared, **asdict(p)} for p in (self.baseline, *self.points)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [asdict(p) for p in self.points]
        return _no_nan(data)

    def write_csv(self, path: Path | str) -> Path:
        """Every row as CSV (atomically); NaN is an empty cell."""
        rows = self.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        atomic_write_bytes(Path(path), buffer.getvalue().encode())
        return Path(path)

    def write_json(self, path: Path | str) -> Path:
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_bytes(Path(path), (text + "\n").encode())
        return Path(path)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


# ----------------------------------------------------------------- the timeouts
def log_timeouts(points: int, low: float = MIN_TIMEOUT_S, high: float = 3e-2) -> tuple[float, ...]:
    """``points`` log-spaced timeouts from ``low`` to ``high`` s, rounded to 2 digits."""
    if points < 2:
        raise InvalidParameterError(f"`--points` must be at least 2, got {points}.")
    return tuple(float(f"{t:.2g}") for t in np.geomspace(low, high, points))


def parse_timeouts(text: str) -> tuple[float, ...]:
    """``"1e-5,5e-4,0.03"`` (seconds) -> checked, sorted timeouts."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidParameterError(
            f"`--timeouts` must be seconds separated by commas, got {text!r}; e.g. "
            "`--timeouts 1e-5,5e-4,0.03`."
        ) from None
    return check_timeouts(values)


def check_timeouts(values: Sequence[float]) -> tuple[float, ...]:
    if not values:
        raise InvalidParameterError("`--timeouts` must name at least one timeout.")
    # NaN is bad too; float noise (10 * 1e-6 < 1e-5) is not
    bad = [v for v in values if not MIN_TIMEOUT_S * (1 - 1e-9) <= v <= MAX_TIMEOUT_S]
    if bad:
        raise InvalidParameterError(
            f"`--timeouts` must lie in {MIN_TIMEOUT_S:g}..{MAX_TIMEOUT_S:g} s, got {bad[0]:g}."
        )
    if len(set(values)) != len(values):
        raise InvalidParameterError(f"`--timeouts` lists a timeout twice: {list(values)}.")
    return tuple(sorted(values))


def check_fail_rank(num_devices: int, rank: int) -> None:
    """``rank`` is a node of a bundle of ``num_devices`` (at least 2: one must survive)."""
    if num_devices < 2:
        raise InvalidParameterError("the timeout study needs a bundle of at least 2 devices.")
    if not 0 <= rank < num_devices:
        raise InvalidParameterError(
            f"`--fail` must be a node of the bundle, 0..{num_devices - 1}, got {rank}."
        )


def resolve_link(link: LinkProfile | str | None) -> LinkProfile | None:
    """A link profile by name or ``.toml`` path (unknown names list the choices)."""
    return load_link_profile(link) if isinstance(link, str) else link


# ----------------------------------------------------------------- the study
def run_timeout_study(
    bundle: Path | str,
    images: Tensor,
    labels: Tensor,
    *,
    timeouts_s: Sequence[float] = DEFAULT_TIMEOUTS_S,
    fail_rank: int = 1,
    fail_at: int | None = None,
    in_flight: int = 1,
    heartbeat_divisor: float = HEARTBEAT_DIVISOR,
    link: LinkProfile | str | None = None,
    progress: Progress = _quiet,
) -> TimeoutStudy:
    """Stream ``images`` once per timeout with node ``fail_rank`` killed before image
    ``fail_at`` (default: half way, so each stream has its own no-failure half under the
    same timeout and machine load), and once with no failure at the bundle's timings.

    Raises:
        InvalidParameterError: timeouts out of range, a rank the bundle lacks, ``fail_at``
            not before the last image, or ``heartbeat_divisor`` not above 1.
        CorruptFileError: ``bundle`` is not a readable bundle.
    """
    manifest = read_manifest(bundle)  # a folder that is not a bundle fails here
    timeouts = check_timeouts(timeouts_s)
    nd = manifest.num_devices
    check_fail_rank(nd, fail_rank)
    fail_at = images.shape[0] // 2 if fail_at is None else fail_at
    if not 0 <= fail_at < images.shape[0]:
        raise InvalidParameterError(
            f"`fail_at` must be an image before the last ({images.shape[0]} streamed), "
            f"got {fail_at}."
        )
    if not heartbeat_divisor > 1:
        raise InvalidParameterError(
            f"`heartbeat_divisor` must be above 1 (a node beats more often than the timeout), "
            f"got {heartbeat_divisor:g}."
        )
    profile = resolve_link(link)
    survivors = _simulated(Path(bundle), images, (fail_rank,))
    intact = _simulated(Path(bundle), images, ())
    base = read_runtime(bundle)
    progress(f"no failure (timeout {base.timeout_s:g} s, heartbeat {base.heartbeat_s:g} s)")
    baseline = _stream(
        bundle, images, labels, None, fail_at, intact,
        LaunchOptions(in_flight=in_flight), profile,
    )  # fmt: skip
    points = []
    for timeout in timeouts:
        progress(f"timeout {timeout * 1e6:g} us, node {fail_rank} killed at image {fail_at}")
        options = LaunchOptions(
            in_flight=in_flight, timeout_s=timeout, heartbeat_s=timeout / heartbeat_divisor
        )
        points.append(
            _stream(bundle, images, labels, fail_rank, fail_at, survivors, options, profile)
        )
    return TimeoutStudy(
        bundle=str(bundle),
        model=manifest.model,
        method=manifest.partition.method,
        num_devices=nd,
        failed=fail_rank,
        fail_at=fail_at,
        images=int(images.shape[0]),
        in_flight=in_flight,
        heartbeat_divisor=heartbeat_divisor,
        link=baseline.link,
        baseline=baseline,
        points=tuple(points),
    )


def _simulated(bundle: Path, images: Tensor, failed: tuple[int, ...]) -> Tensor:
    """The failure simulation's logits for every image with ``failed`` down."""
    manifest = read_manifest(bundle)
    spec = MODELS.get(manifest.model)
    module = spec.build()
    module.load_state_dict(reassemble(bundle, module))
    net = MaskedNetwork(trace_model(module, spec.input_shape, name=manifest.model))
    return simulate(net, manifest.partition, failed, images)


def _stream(
    bundle: Path | str,
    images: Tensor,
    labels: Tensor,
    failed: int | None,
    fail_at: int,
    expected: Tensor,
    options: LaunchOptions,
    link: LinkProfile | None,
) -> TimeoutPoint:
    faults = [] if failed is None else [Fault(FaultKind.FAIL, failed, fail_at)]
    with tempfile.TemporaryDirectory(prefix="robustdice-timeout-") as tmp:
        summary, result = run_local(
            bundle, images, labels, faults=faults, options=options, report_dir=Path(tmp),
            simulate=False, link=link, image_timeout_s=_image_timeout_s(options),
        )  # fmt: skip
        reports = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("node-*.json"))]
    return _point(summary, result, reports, labels, failed, fail_at, expected)


def _image_timeout_s(options: LaunchOptions) -> float:
    """How long the client waits for an answer: an image lost to false detections at a tiny
    timeout would otherwise hold the sweep for the client's 10 s default each."""
    return max(IMAGE_TIMEOUT_FLOOR_S, 20 * (options.timeout_s or 0.0))


def _point(
    summary: RunSummary,
    result: StreamResult,
    reports: list[dict[str, Any]],
    labels: Tensor,
    failed: int | None,
    fail_at: int,
    expected: Tensor,
) -> TimeoutPoint:
    after = slice(fail_at, len(result.answered_by))
    first = result.answered_by[:fail_at] >= 0
    before = (result.latency_s[:fail_at] * 1000)[first]
    answered = result.answered_by[after] >= 0
    latency = (result.latency_s[after] * 1000)[answered]
    killed_at = _killed_at(summary, result, failed, fail_at)
    detected = _detected_at(reports, failed, killed_at)
    sent = result.sent_at[after]
    transient = (
        answered & (sent < detected) if detected is not None else answered & (sent >= killed_at)
    )
    if failed is None:
        transient = np.zeros_like(answered)
    steady = answered & ~transient
    lat_all = result.latency_s[after] * 1000
    logits = result.logits[after]
    n = after.stop - after.start
    return TimeoutPoint(
        scenario="no failure" if failed is None else "1 failed",
        timeout_s=summary.timeout_s,
        heartbeat_s=summary.heartbeat_s,
        failed=failed,
        images=n,
        answered=int(answered.sum()),
        lost=int(n - answered.sum()),
        latency_p50_ms=_pct(latency, 50),
        latency_p90_ms=_pct(latency, 90),
        latency_max_ms=_pct(latency, 100),
        latency_mean_ms=float(latency.mean()) if latency.size else math.nan,
        fps=_fps(result, after, answered),
        top1_pct=_top1(logits, answered, labels[after]),
        simulated_top1_pct=100
        * float((expected[after].argmax(1) == labels[after]).float().mean()),
        matching_simulation=_matching(logits, answered, expected[after]),
        before_p50_ms=_pct(before, 50),
        before_mean_ms=float(before.mean()) if before.size else math.nan,
        before_top1_pct=_top1(result.logits[:fail_at], first, labels[:fail_at]),
        transient_images=int(transient.sum()),
        transient_max_ms=_pct(lat_all[transient], 100),
        steady_p50_ms=_pct(lat_all[steady], 50),
        steady_max_ms=_pct(lat_all[steady], 100),
        detection_s=None if detected is None else detected - killed_at,
        false_downs=_false_downs(reports, failed, result.started, result.finished),
        absent_waits=sum(r["stats"]["absent_waits"] for r in reports),
        unadmitted=sum(r["stats"]["images_unadmitted"] for r in reports),
        link=summary.link,
    )


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def _fps(result: StreamResult, after: slice, answered: np.ndarray) -> float:
    if not answered.any():
        return 0.0
    span = np.nanmax(result.answered_at[after]) - result.sent_at[after.start]
    return float(answered.sum() / max(span, 1e-9))


def _top1(logits: np.ndarray, answered: np.ndarray, labels: Tensor) -> float:
    if logits.shape[1] == 0 or not len(answered):
        return 0.0 if len(answered) else math.nan
    predicted = np.nan_to_num(logits, nan=-np.inf).argmax(axis=1)
    return 100 * float(((predicted == labels.numpy()) & answered).mean())


def _matching(logits: np.ndarray, answered: np.ndarray, expected: Tensor) -> int:
    if logits.shape[1] == 0:
        return 0
    close = np.isclose(logits, expected.numpy(), rtol=0, atol=MATCH_ATOL).all(axis=1)
    return int((close & answered).sum())


def _killed_at(
    summary: RunSummary, result: StreamResult, failed: int | None, fail_at: int
) -> float:
    """The kill's time on the shared monotonic clock (the baseline: image ``fail_at`` sent)."""
    if failed is None or not summary.faults:
        return float(result.sent_at[fail_at])
    return float(result.started + summary.faults[0].at_s)


def _detected_at(reports: list[dict[str, Any]], failed: int | None, since: float) -> float | None:
    """When the last survivor came to count ``failed`` down for good (None: one never did).

    A survivor that had already (falsely) marked it down before the kill, and never heard it
    again, counts from the kill itself."""
    if failed is None:
        return None
    times = []
    for report in reports:
        if report["rank"] == failed:
            continue
        changes = [c for c in report["membership"] if c["rank"] == failed]
        if not changes or changes[-1]["event"] != "down":
            return None
        times.append(max(changes[-1]["at"], since))
    return max(times) if times else None


def _false_downs(
    reports: list[dict[str, Any]], failed: int | None, started: float, finished: float
) -> int:
    """DOWN events for peers that were alive (every peer but the killed one) while the
    stream ran (not while the nodes started or stopped)."""
    return sum(
        1
        for report in reports
        for change in report["membership"]
        if change["event"] == "down"
        and change["rank"] != failed
        and started <= change["at"] <= finished
    )
