"""`dse calibrate`: fit a device profile to runtime measurements (`dse measure --json`).

The cost model's seconds per image, ``T = 1 / fps``, are piecewise linear in
``theta = (1 / R, 1 / B, o[, l], m)``: R the sustained FLOP/s, B the sustained memory
bandwidth, o the per-unit overhead, with ``fit_link`` l the link's per-message latency (a
delay), and m the node's processor time per message sent or received (a roofline
max per unit and device, a max over devices, and under the
overlapped schedule the larger of latency / K and the busiest resource). Around the current
``theta`` each measured run j gives ``T_j ~ c_j + g_j . theta``, with ``g_j`` the cost
model's own derivative (`_linearise`) and ``c_j`` the part that does not depend on the
device (gathers on the link). A non-negative least squares fit on relative errors
(`scipy.optimize.nnls`) gives a new ``theta``; this repeats until it settles (a Gauss-Newton
iteration on the cost model itself, so the profile that is written predicts exactly what the
fit saw). Parameters the runs cannot tell apart (a roofline side no unit reaches, a column
the others explain) keep the base profile's value and say so.

Energy: idle power and energy per FLOP are fitted only from runs whose energy a real meter
measured (``measured:*``); otherwise they stay the base profile's.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from dse._measure import read_measurements
from robustdice_core import CorruptFileError, InvalidParameterError, Partition
from robustdice_core.costs import (
    CostEstimate,
    DeviceProfile,
    LinkProfile,
    ModelCostInfo,
    Precision,
    ProfileValue,
    Schedule,
    describe_schedule,
    estimate_costs,
    load_device_profile,
    load_link_profile,
)
from robustdice_core.io import atomic_write_bytes

__all__ = [
    "MIN_POINTS",
    "Calibration",
    "CalibrationPoint",
    "MeasuredRuns",
    "PointError",
    "calibrate",
    "calibrate_file",
    "read_runs",
    "write_profile",
]

MIN_POINTS = 3  # measured runs the fit needs (at least one more than it usually fits)
_MAX_ITERATIONS = 30


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured run: its partition, and what the runtime measured."""

    label: str
    partition: Partition
    fps: float
    in_flight: int
    energy_j: float | None = None  # only a real meter's reading
    energy_source: str = ""


@dataclass(frozen=True)
class PointError:
    """A run's FPS as measured and as predicted by the base and the fitted profile."""

    label: str
    held_out: bool
    measured_fps: float
    base_fps: float
    fitted_fps: float
    in_flight: int = 1  # the run's schedule: 1 barrier, K > 1 overlapped

    @property
    def base_error_pct(self) -> float:
        return 100.0 * (self.base_fps / self.measured_fps - 1.0)

    @property
    def fitted_error_pct(self) -> float:
        return 100.0 * (self.fitted_fps / self.measured_fps - 1.0)


@dataclass(frozen=True)
class Calibration:
    profile: DeviceProfile
    link: LinkProfile | None  # with `fit_link`: the link with its fitted latency
    base: DeviceProfile
    fitted: tuple[str, ...]  # profile fields fitted here
    kept: dict[str, str]  # profile field -> why it keeps the base value
    errors: tuple[PointError, ...]
    iterations: int
    schedule: str  # how the runs were predicted, e.g. "overlapped schedule, 4 in flight"

    def summary(self, held_out: bool) -> tuple[float, float] | None:
        """Median and largest absolute FPS error (%) of the fitted (or held-out) runs."""
        errors = [abs(e.fitted_error_pct) for e in self.errors if e.held_out == held_out]
        return (statistics.median(errors), max(errors)) if errors else None

    def base_summary(self, held_out: bool) -> tuple[float, float] | None:
        errors = [abs(e.base_error_pct) for e in self.errors if e.held_out == held_out]
        return (statistics.median(errors), max(errors)) if errors else None


def calibrate(
    points: Sequence[CalibrationPoint],
    info: ModelCostInfo,
    base: DeviceProfile,
    link: LinkProfile,
    *,
    dtype: Precision = Precision.FP32,
    hold_out: Sequence[str] = (),
    source: str = "",
    name: str | None = None,
    fit_link: bool = False,
    fit_messages: bool = True,
) -> Calibration:
    """Fit ``base``'s compute efficiency, bandwidth efficiency, per-unit and per-message
    overhead (and idle power / energy per FLOP where a meter measured energy) to
    ``points``; the points labelled in ``hold_out`` are only predicted, not fitted.
    ``fit_link`` also fits the link's per-message latency (`Calibration.link`), a delay
    another image's work can fill, unlike the per-message overhead, which is the node's own
    processor time. ``fit_messages=False`` keeps the base's per-message overhead (the cost
    model without that term, for comparison)."""
    unknown = sorted(set(hold_out) - {p.label for p in points})
    if unknown:
        raise InvalidParameterError(
            f"`--hold-out` names {', '.join(unknown)}, which the measurements do not have; "
            f"they have {', '.join(p.label for p in points)}."
        )
    fit = [p for p in points if p.label not in hold_out]
    if len(fit) < MIN_POINTS:
        raise InvalidParameterError(
            f"calibration needs at least {MIN_POINTS} measured runs to fit, got {len(fit)} "
            f"({len(points)} measured, {len(hold_out)} held out); measure more trials "
            "(`dse measure --trials pareto`)."
        )
    if len({p.partition for p in fit}) < 2:
        raise InvalidParameterError(
            f"the {len(fit)} runs to fit all ran the same partition: their features are "
            "degenerate (nothing to tell compute from overhead); measure different trials."
        )
    model = _Model(info, link, dtype, base)
    theta, free, kept, iterations = _fit_time(model, fit, fit_link, fit_messages)
    values = model.values(theta, free)
    fitted_link = model.link_for(theta) if 3 in free else None
    if fitted_link is not None:
        model = _Model(info, fitted_link, dtype, base)
    energy, energy_kept = _fit_energy(model, model.with_values(values), fit)
    kept.update(energy_kept)
    values.update(energy)
    fitted_profile = model.with_values(values)
    errors = tuple(
        PointError(
            label=p.label,
            held_out=p.label in hold_out,
            measured_fps=p.fps,
            base_fps=_Model(info, link, dtype, base).fps(base, p),
            fitted_fps=model.fps(fitted_profile, p),
            in_flight=p.in_flight,
        )
        for p in points
    )
    fit_errors = [abs(e.fitted_error_pct) for e in errors if not e.held_out]
    residual = (
        f"; FPS residual over the {len(fit_errors)} fitted runs: median "
        f"{statistics.median(fit_errors):.1f} %, max {max(fit_errors):.1f} %"
    )
    profile = _with_provenance(base, values, source + residual, name)
    return Calibration(
        profile=profile,
        link=None if fitted_link is None else _link_provenance(fitted_link, source + residual),
        base=base,
        fitted=tuple(values),
        kept=kept,
        errors=errors,
        iterations=iterations,
        schedule=", ".join(sorted({describe_schedule(p.in_flight) for p in points})),
    )


# ----------------------------------------------------------------------------- the model
class _Model:
    """The cost model as a function of theta for one model, link and precision."""

    def __init__(
        self, info: ModelCostInfo, link: LinkProfile, dtype: Precision, base: DeviceProfile
    ) -> None:
        self.info, self.link, self.dtype, self.base = info, link, dtype, base
        self.nbytes = dtype.bytes

    def theta(self, profile: DeviceProfile) -> np.ndarray:
        return np.array(
            [
                1.0 / profile.flops_per_s(self.nbytes),
                1.0 / profile.bytes_per_s,
                profile.unit_overhead_s.value,
                self.link.latency_s.value,
                profile.message_overhead_s.value,
            ]
        )

    def link_for(self, theta: np.ndarray) -> LinkProfile:
        return replace(self.link, latency_s=_number(float(theta[3])))

    def profile(self, theta: np.ndarray) -> DeviceProfile:
        return self.with_values(self.values(theta, [0, 1, 2, 4]))

    def with_values(self, values: dict[str, float]) -> DeviceProfile:
        numbers: dict[str, Any] = {k: _number(v) for k, v in values.items()}
        return replace(self.base, **numbers)

    def values(self, theta: np.ndarray, indices: Sequence[int]) -> dict[str, float]:
        """The profile fields theta's entries ``indices`` set (an efficiency above 1 raises
        the peak instead: the measured rate beats the base's peak)."""
        base, out = self.base, {}
        if 0 in indices:
            peak, rate = getattr(base, self._peak_field()).value, 1.0 / theta[0]
            out[self._efficiency_field()] = min(rate / peak, 1.0)
            if rate > peak:
                out[self._peak_field()] = rate
        if 1 in indices:
            peak, rate = base.memory_bandwidth_bytes_per_s.value, 1.0 / theta[1]
            out["bandwidth_efficiency"] = min(rate / peak, 1.0)
            if rate > peak:
                out["memory_bandwidth_bytes_per_s"] = rate
        if 2 in indices:
            out["unit_overhead_s"] = float(theta[2])
        if 4 in indices:
            out["message_overhead_s"] = float(theta[4])
        return out

    def _peak_field(self) -> str:
        return "peak_flops_fp16" if self.nbytes == 2 else "peak_flops_fp32"

    def _efficiency_field(self) -> str:
        return "compute_efficiency_fp16" if self.nbytes == 2 else "compute_efficiency_fp32"

    def seconds(self, theta: np.ndarray, point: CalibrationPoint) -> float:
        return 1.0 / self.estimate(self.profile(theta), point, self.link_for(theta)).fps

    def fps(self, profile: DeviceProfile, point: CalibrationPoint) -> float:
        return self.estimate(profile, point).fps

    def estimate(
        self, profile: DeviceProfile, point: CalibrationPoint, link: LinkProfile | None = None
    ) -> CostEstimate:
        overlapped = point.in_flight > 1
        return estimate_costs(
            point.partition,
            self.info,
            profile,
            link or self.link,
            dtype=self.dtype,
            schedule=Schedule.OVERLAPPED if overlapped else Schedule.BARRIER,
            in_flight=point.in_flight if overlapped else None,
        )


def _number(value: float) -> ProfileValue:
    return ProfileValue(value=float(value), source="", estimated=True)


_FIELDS = {
    0: "compute_efficiency",
    1: "bandwidth_efficiency",
    2: "unit_overhead_s",
    3: "latency_s (link)",
    4: "message_overhead_s",
}


def _linearise(
    model: _Model, theta: np.ndarray, points: Sequence[CalibrationPoint]
) -> tuple[np.ndarray, np.ndarray]:
    """``[n, len(theta)]`` derivatives of each run's seconds per image by theta, and ``[n]``
    the rest (T - g . theta). T is piecewise linear in theta: a small relative step is exact within
    the current piece."""
    steps = np.where(theta > 0, 1e-6 * theta, 1e-12)
    rows, rest = [], []
    for point in points:
        seconds = model.seconds(theta, point)
        g = np.array(
            [
                (model.seconds(theta + step * np.eye(len(theta))[i], point) - seconds) / step
                for i, step in enumerate(steps)
            ]
        )
        rows.append(g)
        rest.append(seconds - g @ theta)
    return np.array(rows), np.array(rest)


@dataclass(frozen=True)
class _Fit:
    theta: np.ndarray
    free: tuple[int, ...]
    iterations: int
    residual: float  # RMS relative error of the seconds per image


def _fit_time(
    model: _Model, points: Sequence[CalibrationPoint], fit_link: bool, fit_messages: bool
) -> tuple[np.ndarray, list[int], dict[str, str], int]:
    """The best fit over every subset of the parameters the runs depend on (fewer
    parameters unless more fit clearly better, `_better`); the others keep the base's values."""
    target = np.array([1.0 / p.fps for p in points])
    candidates = [0, 1, 2] + [3] * fit_link + [4] * fit_messages
    g, _ = _linearise(model, model.theta(model.base), points)
    usable = [i for i in candidates if _depends(g[:, i] / target, g / target[:, None])]
    if not usable:
        raise InvalidParameterError(
            "the measurements cannot calibrate this profile: the cost model's seconds per "
            "image do not depend on its compute rate, bandwidth or overhead for these runs "
            "(degenerate features); measure trials that differ in their work per device."
        )
    best: _Fit | None = None
    for size in range(1, len(usable) + 1):
        for subset in itertools.combinations(usable, size):
            fit = _gauss_newton(model, points, target, list(subset))
            if fit is not None and (best is None or _better(fit, best)):
                best = fit
    if best is None:
        raise InvalidParameterError(
            f"the {len(points)} measured runs cannot tell the profile's parameters apart "
            "(degenerate features); measure trials that differ in their work per device."
        )
    kept = {
        _FIELDS[i]: "no run depends on it (no unit is limited by it)"
        if i not in usable
        else "not needed: the runs are fitted as well without it"
        for i in candidates
        if i not in best.free
    }
    return best.theta, list(best.free), kept, best.iterations


def _better(fit: _Fit, best: _Fit) -> bool:
    """More parameters must fit clearly better: 2 % less residual and 1e-6 absolute."""
    return best.residual - fit.residual > max(0.02 * best.residual, 1e-6)


def _depends(column: np.ndarray, every: np.ndarray) -> bool:
    return bool(np.any(np.abs(column) > 1e-12 * np.abs(every).max(initial=1.0)))


def _gauss_newton(
    model: _Model, points: Sequence[CalibrationPoint], target: np.ndarray, free: list[int]
) -> _Fit | None:
    """Gauss-Newton on relative errors with theta >= 0 over ``free``; None when the runs
    cannot identify them or the fit sets one to zero (a smaller subset covers that)."""
    theta = model.theta(model.base)
    weights = 1.0 / target
    for iteration in range(1, _MAX_ITERATIONS + 1):
        g, rest = _linearise(model, theta, points)
        if len(_identifiable(g, target, free)[0]) < len(free):
            return None
        fixed = [i for i in range(len(theta)) if i not in free]
        a = g[:, free] * weights[:, None]
        b = (target - rest - g[:, fixed] @ theta[fixed]) * weights
        solution, _ = nnls(a, b)
        if np.any(solution <= 0):
            return None
        new = theta.copy()
        new[free] = solution
        converged = np.allclose(new, theta, rtol=1e-6, atol=0)
        theta = new
        if converged:
            break
    seconds = np.array([model.seconds(theta, p) for p in points])
    residual = float(np.sqrt(np.mean(((seconds - target) * weights) ** 2)))
    return _Fit(theta, tuple(free), iteration, residual)


def _identifiable(
    g: np.ndarray, target: np.ndarray, free: list[int]
) -> tuple[list[int], dict[int, str]]:
    """The free columns, in order, that add to the rank of the (relative) feature matrix."""
    scaled = g / target[:, None]
    chosen: list[int] = []
    reasons: dict[int, str] = {}
    for i in free:
        column = scaled[:, i]
        if not np.any(np.abs(column) > 1e-12 * np.abs(scaled).max(initial=1.0)):
            reasons[i] = "no run depends on it (e.g. no unit is limited by it)"
            continue
        trial = scaled[:, [*chosen, i]]
        if np.linalg.matrix_rank(trial, tol=1e-9 * np.abs(trial).max()) <= len(chosen):
            reasons[i] = "the runs cannot tell it apart from the other parameters"
            continue
        chosen.append(i)
    return chosen, reasons


# ----------------------------------------------------------------------------- energy
def _fit_energy(
    model: _Model, profile: DeviceProfile, points: Sequence[CalibrationPoint]
) -> tuple[dict[str, float], dict[str, str]]:
    """Idle power and energy per FLOP from the runs a real meter measured, by non-negative
    least squares on the largest device's energy: P * s + e * FLOPs + (link energy)."""
    metered = [
        p for p in points if p.energy_j is not None and p.energy_source.startswith("measured:")
    ]
    flop_field = "energy_per_flop_fp16_j" if model.nbytes == 2 else "energy_per_flop_fp32_j"
    if len(metered) < MIN_POINTS:
        why = f"energy measured by a meter in {len(metered)} run(s), fewer than {MIN_POINTS}"
        return {}, {"idle_power_w": why, flop_field: why}
    rows, rest, target = [], [], []
    for point in metered:
        costs = model.estimate(profile, point)
        d = int(np.argmax([c.energy_j for c in costs.per_device]))
        device = costs.per_device[d]
        seconds = 1.0 / costs.fps if costs.in_flight > 1 else costs.latency_s
        idle = profile.idle_power_w.value * seconds
        dynamic = profile.energy_per_flop_j(model.nbytes) * device.flops
        rows.append([seconds, device.flops])
        rest.append(device.energy_j - idle - dynamic)
        target.append(float(point.energy_j or 0.0))
    weights = 1.0 / np.maximum(np.array(target), 1e-30)
    solution, _ = nnls(np.array(rows) * weights[:, None], (np.array(target) - rest) * weights)
    return {"idle_power_w": float(solution[0]), flop_field: float(solution[1])}, {}


# ----------------------------------------------------------------------------- provenance
def _with_provenance(
    base: DeviceProfile, values: dict[str, float], source: str, name: str | None
) -> DeviceProfile:
    """The fitted values say how they were fitted; the others keep the base's numbers and
    sources."""
    fitted = {k: ProfileValue(float(v), source, estimated=True) for k, v in values.items()}
    return replace(
        base,
        **fitted,
        name=name or f"{base.name}_calibrated",
        description=f"{base.description} Calibrated: {source}.",
        path="",
    )


def _link_provenance(link: LinkProfile, source: str) -> LinkProfile:
    latency = ProfileValue(link.latency_s.value, source, estimated=True)
    return replace(
        link,
        latency_s=latency,
        name=f"{link.name}_calibrated",
        description=f"{link.description} Calibrated per-message latency: {source}.",
        path="",
    )


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class MeasuredRuns:
    """A `dse measure --json` file, read: its runs and what they ran on."""

    points: tuple[CalibrationPoint, ...]
    info: ModelCostInfo
    dtype: Precision
    link: LinkProfile
    device_profile: str  # the study's
    data: dict[str, Any]  # the file's content

    def predicted_fps(
        self, profile: DeviceProfile, point: CalibrationPoint, link: LinkProfile | None = None
    ) -> float:
        """``profile``'s FPS for one run, in the schedule it ran in (on ``link``, default
        the study's)."""
        return _Model(self.info, link or self.link, self.dtype, profile).fps(profile, point)


def read_runs(paths: Path | Sequence[Path]) -> MeasuredRuns:
    """The runs of one or several `dse measure --json` files of one study setting (the same
    model, devices, profiles and precision; e.g. one file per schedule); labels
    ``#<trial>`` and baseline names."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    if not files:
        raise InvalidParameterError("name at least one measurements file (`dse measure --json`).")
    contents = [read_measurements(path) for path in files]
    for path, data in zip(files[1:], contents[1:], strict=True):
        differ = [k for k in _SAME_SETTING if data.get(k) != contents[0].get(k)]
        if differ:
            raise InvalidParameterError(
                f"`{path}` and `{files[0]}` measure different settings ({', '.join(differ)}: "
                f"{data.get(differ[0])!r} vs {contents[0].get(differ[0])!r}); calibrate them "
                "separately."
            )
    data = {**contents[0], "entries": [e for d in contents for e in d.get("entries", [])]}
    try:
        emulated = sorted({str(e["measurement"].get("link")) for e in data["entries"]})
        points = tuple(_point(entry) for entry in data["entries"])
        model_name, dtype = str(data["model"]), Precision(data["dtype"])
        link = load_link_profile(str(data["link_profile"]))
        device_profile = str(data["device_profile"])
    except (KeyError, TypeError, ValueError) as err:
        names = ", ".join(f"`{f}`" for f in files)
        raise CorruptFileError(f"{names}: not a complete measurements file: {err!r}.") from None
    if len(emulated) > 1:
        raise InvalidParameterError(
            f"the runs were measured on different links ({', '.join(emulated)}: e.g. one with "
            "`--no-emulate-link`); calibrate runs of one link together."
        )
    return MeasuredRuns(points, _cost_info(model_name), dtype, link, device_profile, data)


_SAME_SETTING = ("model", "devices", "dtype", "device_profile", "link_profile")


def calibrate_file(
    path: Path | Sequence[Path],
    *,
    base: str | None = None,
    hold_out: Sequence[str] = (),
    name: str | None = None,
    fit_link: bool = False,
    fit_messages: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> Calibration:
    """`calibrate` on one or several `dse measure --json` files (`read_runs`); ``base``
    defaults to the study's device profile. Labels: ``#<trial>`` and baseline names; a label
    held out is held out in every file."""
    runs = read_runs(path)
    data, link = runs.data, runs.link
    base_profile = load_device_profile(base or runs.device_profile)
    now = (clock or (lambda: datetime.now(timezone.utc)))()
    fit_count = len([p for p in runs.points if p.label not in hold_out])
    source = (
        f"measured: fitted by dse calibrate on {platform.node() or 'unknown host'} "
        f"{now.isoformat(timespec='seconds')} from {fit_count} runs of study "
        f"`{data.get('study')}` ({data['model']}, {data.get('devices')} nodes, link "
        f"{link.name}, {_measured_on(data)}); base profile {base_profile.name}"
    )
    return calibrate(
        runs.points,
        runs.info,
        base_profile,
        link,
        dtype=runs.dtype,
        hold_out=hold_out,
        source=source,
        name=name,
        fit_link=fit_link,
        fit_messages=fit_messages,
    )


def _measured_on(data: dict[str, Any]) -> str:
    runs = [e["measurement"] for e in data["entries"]]
    flights = sorted({int(r["in_flight"]) for r in runs})
    images = sorted({int(r["images"]) for r in runs})
    return f"{'/'.join(map(str, images))} images, {'/'.join(map(str, flights))} in flight"


def _point(entry: dict[str, Any]) -> CalibrationPoint:
    m = entry["measurement"]
    kind, name = str(m["subject"]).split(":", 1)
    return CalibrationPoint(
        label=f"#{name}" if kind == "trial" else name,
        partition=Partition.from_dict(entry["partition"]),
        fps=float(m["fps"]),
        in_flight=int(m["in_flight"]),
        energy_j=None if m.get("energy_j") is None else float(m["energy_j"]),
        energy_source=str(m.get("energy_source", "")),
    )


def _cost_info(model_name: str) -> ModelCostInfo:
    """The model's cost figures from its architecture alone (random weights, traced)."""
    import torch

    from robustdice_core.units import trace_model
    from robustdice_core.zoo import MODELS

    spec = MODELS.get(model_name)
    with torch.random.fork_rng(devices=[]):
        traced = trace_model(spec.build(), spec.input_shape, name=spec.name)
    return ModelCostInfo.from_traced(traced)


def write_profile(
    profile: DeviceProfile | LinkProfile, out: Path, *, option: str = "--out"
) -> Path:
    """A (calibrated) profile as TOML in the profile file format, loaded back as a check."""
    if out.suffix != ".toml":
        raise InvalidParameterError(f"`{option}` must name a .toml file, got `{out}`.")
    if out.is_dir() or not out.parent.is_dir():
        raise InvalidParameterError(
            f"`{option}` must name a file in an existing folder, got `{out}`."
        )
    data = profile.to_dict()
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [
        "# Written by `dse calibrate`: fitted values say so in their source; the others are "
        "the base profile's."
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in data.items() if k not in tables]
    for key, value in tables.items():
        lines += ["", f"[{key}]", *(f"{k} = {_toml(v)}" for k, v in value.items())]
    try:
        atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
    except OSError as err:
        raise InvalidParameterError(f"cannot write `{out}`: {err.strerror or err}.") from None
    (load_device_profile if isinstance(profile, DeviceProfile) else load_link_profile)(out)
    return out


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
