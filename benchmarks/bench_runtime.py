"""The N-node runtime on local processes: FPS, failure detection, bytes on the wire, soak.

Bundles of the embedded digits models (LOP, RobustDiCE on the runtime tests' seeded scores,
CDC for the traffic check) run as `LocalMesh` nodes on loopback, one torch thread each.

1. FPS of ND = 2, 3, 4 nodes (in_flight 1 and 4) against the single-process forward of the
   same model on the same images (batch of 1, one thread), interleaved in the same run.
2. Failure-detection delay: SIGKILL a node mid-stream, the delay to the first survivor's DOWN
   (membership histories, shared monotonic clock), vs [timeout - interval, timeout + interval].
3. Bytes on the wire per image (node reports) vs `estimate_costs`'s per-device ``bytes_tx``.
4. A soak on digits-alexnet (RobustDiCE, ND 4): seeded kills, freezes and restarts; no image
   lost, none mixed up, Top-1 after the last rejoin at the no-failure level.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from torch import Tensor

from benchmarks import _runtime_cases as rc
from benchmarks._common import (
    BenchResult,
    code_state,
    console,
    fmt,
    make_table,
    quick_parser,
    report,
)
from runtime import Fault, FaultKind, LaunchOptions, LocalMesh, StreamResult

NAME = "runtime"
MODELS = ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
NO_FAILURE = "no failure"
PARTS = ("fps", "bytes", "detection", "soak", "error")
DETECTION_SLACK_S = 0.1  # scheduling allowance on a loaded machine, beyond the window
SOAK_TIMINGS = (0.5, 0.1)  # timeout, heartbeat (s)
SEED = 0
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Sizes:
    """How much of each part runs (`FULL` or `QUICK`)."""

    models: tuple[str, ...]
    node_counts: tuple[int, ...]
    methods: tuple[str, ...]
    in_flight: tuple[int, ...]
    fps_images: int
    fps_repeats: int
    warmup: int
    cdc_models: tuple[str, ...]
    detection: tuple[tuple[float, float], ...]
    detection_reps: int
    detection_images: int
    soak_images: int
    soak_faults: int
    soak_gap: tuple[int, int]
    tail_images: int
    soak_bound_s: float


FULL = Sizes(
    models=MODELS, node_counts=(2, 3, 4), methods=("lop", "robustdice"), in_flight=(1, 4),
    fps_images=100, fps_repeats=3, warmup=10, cdc_models=MODELS,
    detection=((0.3, 0.05), (0.5, 0.1), (1.0, 0.2)), detection_reps=6, detection_images=40,
    soak_images=1000, soak_faults=10, soak_gap=(30, 90), tail_images=300, soak_bound_s=600.0,
)  # fmt: skip
QUICK = Sizes(
    models=("digits-alexnet",), node_counts=(2,), methods=("robustdice",), in_flight=(1,),
    fps_images=30, fps_repeats=1, warmup=5, cdc_models=(),
    detection=((0.3, 0.05),), detection_reps=1, detection_images=30,
    soak_images=120, soak_faults=2, soak_gap=(8, 15), tail_images=30, soak_bound_s=120.0,
)  # fmt: skip


# --------------------------------------------------------------------------- 1. FPS
def fps_run(case: rc.BundleCase, in_flight: int, sizes: Sizes) -> dict[str, Any]:
    """Streams of ``fps_images`` interleaved with the plain forward of the same images."""
    model = case.model
    images = model.images[: sizes.fps_images]
    plain: list[float] = []
    streams: list[StreamResult] = []
    with rc.running(case, LaunchOptions(in_flight=in_flight, threads=1)) as mesh:
        warm = mesh.stream(model.images[-sizes.warmup :])
        for _ in range(sizes.fps_repeats):
            plain.append(rc.plain_forward_s(model.loaded.module, images))
            streams.append(mesh.stream(images))
        plain.append(rc.plain_forward_s(model.loaded.module, images))
        mesh.stop()
    n = images.shape[0]
    fps = float(np.median([n / (s.finished - s.started) for s in streams]))
    plain_fps = n / float(np.median(plain))
    latency = np.concatenate([s.latency_s[s.answered_by >= 0] for s in streams]) * 1e3
    reports = [life.report for life in mesh.lives if life.report is not None]
    return {
        "model": model.name,
        "method": case.method,
        "num_devices": case.num_devices,
        "replication_factor": case.partition.replication_factor,
        "in_flight": in_flight,
        "images": n,
        "repeats": sizes.fps_repeats,
        "fps": fps,
        "plain_fps": plain_fps,
        "ratio": fps / plain_fps,
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "plain_ms_per_image": 1e3 / plain_fps,
        "lost": sum(s.lost.size for s in [warm, *streams]),
        "false_downs": rc.count_downs(mesh.lives),
        "absent_waits": sum(r["stats"]["absent_waits"] for r in reports),
        "images_skipped": sum(r["stats"]["images_skipped"] for r in reports),
        "images_streamed": warm.answered_by.size + n * sizes.fps_repeats,
        "traffic": rc.node_traffic(mesh.lives, case.num_devices),
        "inputs": rc.input_bytes([warm, *streams]),
    }


# --------------------------------------------------------------------------- 2. detection
def detection_run(
    case: rc.BundleCase, timeout: float, interval: float, sizes: Sizes
) -> dict[str, Any]:
    """``detection_reps`` kills of nodes 1..ND-1 in turn, each restarted before the next."""
    images = case.model.images[: sizes.detection_images]
    kill_at = sizes.detection_images // 4
    options = LaunchOptions(in_flight=4, timeout_s=timeout, heartbeat_s=interval)
    lost = 0
    with rc.running(case, options) as mesh:
        for rep in range(sizes.detection_reps):
            rank = 1 + rep % (case.num_devices - 1)
            result = mesh.stream(images, faults=[Fault(FaultKind.FAIL, rank, kill_at)])
            lost += result.lost.size
            mesh.wait_agreed({rank})
            mesh.restart(rank)
            mesh.wait_agreed(set())
        mesh.stop()
    events = rc.membership_events(mesh.lives)
    delays = [rc.detection_delay(a.at, a.fault.rank, events) for a in mesh.applied]
    window = (timeout - interval, timeout + interval)
    stats = rc.delay_stats(delays, *window, allowance=DETECTION_SLACK_S)
    return {"timeout_s": timeout, "interval_s": interval, "lost": lost, **stats}


# --------------------------------------------------------------------------- 3. bytes
def bytes_row(case: rc.BundleCase, run: dict[str, Any], scenario: str) -> dict[str, Any]:
    """Measured bytes per image (node reports of ``run``) against the cost model."""
    n = run["images_streamed"]
    payload = [rc.activation_payload(t) / n for t in run["traffic"]]
    estimated = rc.estimated_tx(case)
    kinds = rc.per_kind(run["traffic"], n)
    parity = case.partition.parity_device
    data = [d for d in range(case.num_devices) if d != parity]
    match = all(abs(payload[d] - estimated[d]) <= 0.5 for d in data)
    return {
        "model": case.model.name,
        "method": case.method,
        "num_devices": case.num_devices,
        "scenario": scenario,
        "images": n,
        "payload_per_device": payload,
        "estimated_per_device": estimated,
        "payload": sum(payload),
        "estimated": sum(estimated),
        "estimated_parity": estimated[parity] if parity is not None else 0.0,
        "data_devices_match": match if scenario == NO_FAILURE else None,
        "headers": kinds["activation_headers"],
        "results": kinds["result"],
        "control": kinds["control"],
        "inputs": run["inputs"]["bytes"] / n,
        "per_kind": kinds,
    }


def cdc_rows(model: rc.ModelCase, root: Path, sizes: Sizes) -> Rows:
    """CDC on ND 4 with every node up, and with data device 0 down (killed)."""
    case = rc.write_case(model, "cdc", 4, root)
    return [
        {"part": "bytes", **bytes_row(case, fps_run(case, 1, sizes), NO_FAILURE)},
        {"part": "bytes", **bytes_row(case, _degraded_run(case, 0, sizes), "node 0 down")},
    ]


def _degraded_run(case: rc.BundleCase, rank: int, sizes: Sizes) -> dict[str, Any]:
    images = case.model.images[: sizes.fps_images]
    with rc.running(case, LaunchOptions(in_flight=1, threads=1)) as mesh:
        mesh.kill(rank)
        mesh.wait_agreed({rank})
        result = mesh.stream(images)
        mesh.stop()
    return {
        "images_streamed": images.shape[0],
        "traffic": rc.node_traffic(mesh.lives, case.num_devices),
        "inputs": rc.input_bytes([result]),
    }


# --------------------------------------------------------------------------- 4. soak
@dataclass
class SoakRun:
    """What one soak produced: the faulty stream, the tail after the last rejoin."""

    images: Tensor
    labels: Tensor
    stream: StreamResult
    tail: StreamResult
    mesh: LocalMesh
    plan: list[rc.PlannedFault]
    restarted: list[int]
    elapsed_s: float


def soak_stream(case: rc.BundleCase, sizes: Sizes) -> SoakRun:
    """One stream bounded in time with the planned faults, then everyone back (killed nodes
    restarted, freezes over, agreement on no failure) and a tail of test images."""
    images, labels = rc.soak_images(sizes.soak_images, SEED)
    plan = rc.plan_faults(case.num_devices, sizes.soak_faults, gap=sizes.soak_gap, seed=SEED)
    timeout, interval = SOAK_TIMINGS
    options = LaunchOptions(in_flight=4, timeout_s=timeout, heartbeat_s=interval)
    start = time.monotonic()
    with rc.running(case, options) as mesh:
        assert mesh.client is not None
        driver = rc.SoakDriver(mesh, plan, deadline=start + sizes.soak_bound_s)
        stream = mesh.client.stream(
            images, in_flight=options.in_flight, image_timeout_s=max(10.0, 20 * timeout),
            before_send=driver.before_send, on_tick=driver.on_tick,
        )  # fmt: skip
        restarted = driver.finish()
        mesh.wait_agreed(set())
        tail = mesh.stream(case.model.images[: sizes.tail_images])
        mesh.stop()
    elapsed = time.monotonic() - start
    return SoakRun(images, labels, stream, tail, mesh, plan, restarted, elapsed)


def soak_row(case: rc.BundleCase, run: SoakRun, sizes: Sizes) -> dict[str, Any]:
    """The soak's checks: nothing lost or mixed up, Top-1 after the last rejoin."""
    net = case.model.masked_net()
    result = run.stream
    sets, candidates = rc.candidate_logits(net, case.partition, run.images)
    check = rc.check_answers(result.logits, result.answered_by >= 0, candidates, sets)
    events = rc.membership_events(run.mesh.lives)
    faults = [a for a in run.mesh.applied if a.fault.kind is not FaultKind.RESTART]
    n_tail = run.tail.answered_by.size
    tail_labels = case.model.labels[:n_tail].numpy()
    plain_tail = rc.candidate_logits(net, case.partition, case.model.images[:n_tail])[1][0]
    answered = int((result.answered_by >= 0).sum())
    alone = [i for i, s in enumerate(check.set_of) if s >= 0 and len(sets[s]) == len(sets[-1])]
    return {
        "images": len(run.images),
        "planned": [asdict(p) | {"kind": str(p.kind)} for p in run.plan],
        "faults_injected": dict(Counter(str(a.fault.kind) for a in run.mesh.applied)),
        "faults_planned": dict(Counter(str(p.kind) for p in run.plan)),
        "faults_applied": [a.fault.label() for a in run.mesh.applied],
        "restarted_after_stream": run.restarted,
        "answered": answered,
        "lost": len(run.images) - answered,
        "duplicates_discarded": int(result.answers.sum()) - answered,
        "late_answers": result.late_answers,
        "steady": check.steady,
        "transition": check.transition,
        "steady_sets": check.steady_sets(),
        "answered_alone": alone,  # every peer zero-filled (ND - 1 down)
        "mixed_up": list(check.mixed),
        "nearest_other": list(check.nearest_other),
        "nearest_other_steady": check.nearest_other_steady(),
        "latency_max_ms": float(np.nanmax(result.latency_s)) * 1e3,
        "latency_p50_ms": float(np.nanpercentile(result.latency_s, 50)) * 1e3,
        "soak_top1_pct": rc.top1(result.logits, run.labels.numpy()),
        "detection_delays_s": [rc.detection_delay(a.at, a.fault.rank, events) for a in faults],
        "tail_images": n_tail,
        "tail_lost": int(run.tail.lost.size),
        "tail_top1_pct": rc.top1(run.tail.logits, tail_labels),
        "no_failure_top1_pct": rc.top1(plain_tail, tail_labels),
        "tail_max_abs_diff": float(np.abs(run.tail.logits - plain_tail).max()),
        "elapsed_s": run.elapsed_s,
        "bound_s": sizes.soak_bound_s,
        "timings_s": list(SOAK_TIMINGS),
        "per_image": {
            "answered_by": result.answered_by.tolist(),
            "failure_set": check.set_of,  # index into failure_sets; -1 transition, -2 lost
            "failure_sets": [list(s) for s in sets],
            "latency_ms": [None if np.isnan(v) else round(v * 1e3, 2) for v in result.latency_s],
        },
    }


def soak_ok(row: dict[str, Any]) -> bool:
    return (
        row["lost"] == 0
        and not row["mixed_up"]
        and not row["nearest_other_steady"]
        and row["tail_lost"] == 0
        and row["tail_top1_pct"] == row["no_failure_top1_pct"]
        and row["elapsed_s"] <= row["bound_s"]
    )


# --------------------------------------------------------------------------- run
def run(quick: bool = False) -> BenchResult:
    sizes = QUICK if quick else FULL
    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        rows = measure(Path(tmp), sizes)
    return BenchResult(
        name=NAME,
        settings={"quick": quick, "sizes": asdict(sizes), "seed": SEED,
                  "load_average_at_start": load, "code": code_state(),
                  "robustdice_threshold": rc.ROBUSTDICE_THRESHOLD,
                  "link": "loopback (no link emulation)", "node_threads": 1},
        rows=rows,
        summary=_summary(rows),
        notes=_notes(),
    )  # fmt: skip


def measure(root: Path, sizes: Sizes) -> Rows:
    """Every part's rows (``part``: fps, bytes, detection, soak; error: a part that failed)."""
    rows: Rows = []
    for name, nd, method in itertools.product(sizes.models, sizes.node_counts, sizes.methods):
        label = f"{name} {method} ND={nd}"
        rows += guarded(
            label, lambda: throughput_rows(rc.model_case(name), method, nd, root, sizes)
        )
    for name in sizes.cdc_models:
        rows += guarded(f"{name} cdc", partial(cdc_rows, rc.model_case(name), root, sizes))
    soak_case = rc.write_case(rc.model_case("digits-alexnet"), "robustdice", 4, root / "soak")
    for timeout, interval in sizes.detection:
        rows += guarded(
            f"detection {timeout:g}/{interval:g}",
            lambda: [{"part": "detection", **detection_run(soak_case, timeout, interval, sizes)}],
        )
    rows += guarded(
        "soak",
        lambda: [{"part": "soak", **soak_row(soak_case, soak_stream(soak_case, sizes), sizes)}],
    )
    return rows


def guarded(label: str, measure_rows: Callable[[], Rows]) -> Rows:
    """``measure_rows()``, or one error row: a failed part is recorded (and fails the summary)
    instead of losing the other parts' measurements."""
    try:
        return measure_rows()
    except Exception as err:
        console.print(f"{label} failed: {type(err).__name__}: {err}", style="red", markup=False)
        return [{"part": "error", "label": label, "error": f"{type(err).__name__}: {err}"}]


def throughput_rows(model: rc.ModelCase, method: str, nd: int, root: Path, sizes: Sizes) -> Rows:
    """FPS rows of each in_flight; the bytes row of the smallest (no image is skipped)."""
    case = rc.write_case(model, method, nd, root)
    rows: Rows = []
    for in_flight in sizes.in_flight:
        run = fps_run(case, in_flight, sizes)
        rows.append({"part": "fps", **run})
        if in_flight == min(sizes.in_flight):
            rows.append({"part": "bytes", **bytes_row(case, run, NO_FAILURE)})
    return rows


def _summary(rows: Rows) -> dict[str, Any]:
    part = {p: [r for r in rows if r["part"] == p] for p in PARTS}
    checks = {
        "fps_no_image_lost": all(r["lost"] == 0 for r in part["fps"]),
        "bytes_data_devices_match": all(
            r["data_devices_match"] for r in part["bytes"] if r["scenario"] == NO_FAILURE
        ),
        "detection_in_window": all(r["ok"] for r in part["detection"]),
        "soak": bool(part["soak"]) and soak_ok(part["soak"][0]),
        "no_errors": not part["error"],
    }
    ratios = [r["ratio"] for r in part["fps"]]
    return {
        "fps_ratio_min": min(ratios, default=None),
        "fps_ratio_max": max(ratios, default=None),
        "detection_slack_allowance_s": DETECTION_SLACK_S,
        **checks,
        "target_met": all(checks.values()),
    }


def _notes() -> list[str]:
    return [
        "ratio = runtime FPS / single-process FPS (batch 1, one thread), same images, "
        "interleaved in the same run.",
        "detection: kill time to the first survivor's DOWN; window: timeout - interval to "
        f"timeout + interval, ok within {DETECTION_SLACK_S} s beyond it.",
        "bytes per image: activation payload (activation + preact + decoded) vs the cost "
        "model's bytes_tx; CDC's parity sends nothing while every data device is up.",
        "soak: steady = logits equal the simulation of some failure set (1e-4); transition = "
        "a fault during the image; mixed up = equal to another image's candidate, not its "
        "own; nearest another's: the nearest candidate is another image's (only a mix-up for "
        "a steady image).",
    ]


Section = tuple[str, list[str], list[list[object]]]


def sections(result: BenchResult) -> list[Section]:
    """The tables (title, columns, rows) of the parts that have rows."""
    part = {p: [r for r in result.rows if r["part"] == p] for p in PARTS}
    makers: dict[str, Callable[[Rows], Section]] = {
        "fps": _fps_section,
        "detection": _detection_section,
        "bytes": _bytes_section,
        "soak": _soak_section,
        "error": _error_section,
    }
    return [make(part[p]) for p, make in makers.items() if part[p]]


def _fps_section(rows: Rows) -> Section:
    flights = sorted({r["in_flight"] for r in rows})
    keys = sorted({(r["model"], r["method"], r["num_devices"]) for r in rows},
                  key=lambda k: (MODELS.index(k[0]), k[1], k[2]))  # fmt: skip
    by = {(r["model"], r["method"], r["num_devices"], r["in_flight"]): r for r in rows}
    columns = ["model", "partition", "ND", "RF", "plain FPS"]
    for k in flights:
        columns += [f"FPS if{k}", f"ratio if{k}", f"p50/p99 ms if{k}"]
    out: list[list[object]] = []
    for model, method, nd in keys:
        first = by[(model, method, nd, flights[0])]
        line: list[object] = [model, method, nd, round(first["replication_factor"], 2)]
        line.append(float(np.median([by[(model, method, nd, k)]["plain_fps"] for k in flights])))
        for k in flights:
            r = by[(model, method, nd, k)]
            p50, p99 = fmt(r["latency_p50_ms"]), fmt(r["latency_p99_ms"])
            line += [r["fps"], r["ratio"], f"{p50} / {p99}"]
        out.append(line)
    return "FPS: runtime vs single-process forward (median of repeats)", columns, out


def _detection_section(rows: Rows) -> Section:
    columns = ["timeout / interval s", "window s", "kills", "min s", "mean s", "max s",
               "in window", "slack s"]  # fmt: skip
    out: list[list[object]] = [
        [f"{r['timeout_s']:g} / {r['interval_s']:g}",
         f"{r['window_s'][0]:g}-{r['window_s'][1]:g}", len(r["delays_s"]), r["min_s"],
         r["mean_s"], r["max_s"], f"{r['in_window']}/{len(r['delays_s'])}", r["slack_s"]]
        for r in rows
    ]  # fmt: skip
    return "Failure detection: SIGKILL to the first survivor's DOWN", columns, out


def _bytes_section(rows: Rows) -> Section:
    top = max(r["num_devices"] for r in rows)
    columns = ["model", "partition", "scenario", "payload", "cost model", "of it parity",
               "data devs equal", "act. headers", "results", "heartbeats", "inputs"]  # fmt: skip
    keys = ("payload", "estimated", "estimated_parity", "headers", "results", "control")
    out: list[list[object]] = [
        [r["model"], f"{r['method']} ND={r['num_devices']}", r["scenario"],
         *(f"{r[k]:,.0f}" for k in keys[:3]), r["data_devices_match"],
         *(f"{r[k]:,.0f}" for k in keys[3:]), f"{r['inputs']:,.0f}"]
        for r in rows
        if r["num_devices"] == top
    ]  # fmt: skip
    return "Bytes on the wire per image (all nodes), measured vs cost model", columns, out


def _error_section(rows: Rows) -> Section:
    return "Failed parts", ["part", "error"], [[r["label"], r["error"]] for r in rows]


def _soak_section(rows: Rows) -> Section:
    return "Soak (digits-alexnet, RobustDiCE, ND 4)", ["", "value"], _soak_rows(rows[0])


def _soak_rows(r: dict[str, Any]) -> list[list[object]]:
    delays = [d for d in r["detection_delays_s"] if d is not None]
    return [
        ["images (in_flight 4)", r["images"]],
        ["faults injected (planned)", ", ".join(
            f"{r['faults_injected'].get(k, 0)} ({v}) {k}" for k, v in r["faults_planned"].items()
        )],
        ["answered / lost", f"{r['answered']} / {r['lost']}"],
        ["duplicates discarded (late)", f"{r['duplicates_discarded']} ({r['late_answers']})"],
        ["steady / transition", f"{r['steady']} / {r['transition']}"],
        ["answered alone (all peers zero-filled)", len(r["answered_alone"])],
        ["mixed up (nearest another's: steady / transition)",
         f"{len(r['mixed_up'])} ({len(r['nearest_other_steady'])} / "
         f"{len(r['nearest_other']) - len(r['nearest_other_steady'])})"],
        ["latency p50 / max ms", f"{fmt(r['latency_p50_ms'])} / {fmt(r['latency_max_ms'])}"],
        ["detection s (kill, freeze)", f"{fmt(min(delays, default=None))}-"
                                       f"{fmt(max(delays, default=None))}"],
        ["tail Top-1 / no-failure %",
         f"{fmt(r['tail_top1_pct'])} / {fmt(r['no_failure_top1_pct'])} ({r['tail_images']})"],
        ["elapsed / bound s", f"{fmt(r['elapsed_s'])} / {fmt(r['bound_s'])}"],
    ]  # fmt: skip


def table(result: BenchResult) -> Table:
    grid = Table.grid(padding=(1, 0))
    for title, columns, rows in sections(result):
        grid.add_row(make_table(title, columns, rows))
    return grid


def markdown(result: BenchResult) -> str:
    parts = []
    for title, columns, rows in sections(result):
        lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |",
                 "|" + "---|" * len(columns)]  # fmt: skip
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    result = run(quick=args.quick)
    path = report(result, table(result))
    if not args.quick:  # the tables for docs/runtime.md (smoke runs leave no files in git)
        path.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
