"""Peak memory of s3 scoring under its memory budget, one child process per model and budget.

`DivergenceScorer(memory_budget_mb=B)` must hold at most B beside the model's weights: the
reference softmax, the activations after each unit's sync point and the ablation forwards
are all computed per image chunk. Each (model, budget) runs in a fresh child process, which
builds the model and the calibration images, runs one warm-up forward, reads its resident
memory (VmRSS), resets the kernel's high-water mark (``/proc/self/clear_refs``, 5), scores,
and reads the high-water mark (VmHWM): peak = VmHWM - VmRSS before scoring, so the weights,
the images and the libraries are not counted.

Two allocator settings, both in the table: ``tensors`` runs the child with
``MALLOC_MMAP_THRESHOLD_=65536``, so that glibc returns every freed tensor buffer to the
system and the resident memory follows the tensors alive (what the budget bounds);
``default`` is glibc as shipped, which keeps freed blocks below its dynamic 32 MB mmap
threshold for reuse, so the process can stay above the tensors alive.

Models: VGG16-BN (torchvision, random weights, 224 x 224, 16 random calibration images;
units features.0, the largest activations after a sync point, and classifier.0, the whole
conv stack before it and the most ablations per forward; each with one block of ablations
over every image chunk: a unit's peak is reached in its first block) and the three embedded
digits models (their 256 calibration images, full `score()`, after one unmeasured run that
fills the kernel caches; what it kept is reported as "warm-up MB"). "Before" is the
whole-set pattern this scorer replaced: the reference forward of every calibration image at
once and the activations after features.0 for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision
from rich.table import Table

from benchmarks._common import BenchResult, code_state, make_table, report
from robustdice_core.importance import DivergenceScorer
from robustdice_core.masking import MaskedNetwork
from robustdice_core.units import trace_model
from robustdice_core.zoo import LabelledImages, load_model

NAME = "s3_memory"
MB = 2**20
BEFORE = 0  # the "budget" of the whole-set measurement
ALLOCATORS: dict[str, dict[str, str]] = {
    "tensors": {"MALLOC_MMAP_THRESHOLD_": "65536"},
    "default": {},
}
SPOT_NEURONS = 4  # scores compared across budgets: the first few neurons of every unit


@dataclass(frozen=True)
class Case:
    """One model: how to build it, its budgets, and which units to score (None: all)."""

    name: str
    budgets_mb: tuple[int, ...]
    quick_budgets_mb: tuple[int, ...]
    build: Callable[[bool], tuple[MaskedNetwork, LabelledImages]]
    units: tuple[str, ...] | None = None
    quick_units: tuple[str, ...] | None = None
    allocators: tuple[str, ...] = tuple(ALLOCATORS)
    warm_runs: int = 0  # untimed, unmeasured runs first (one-time caches reported apart)


def _vgg16_bn(quick: bool) -> tuple[MaskedNetwork, LabelledImages]:
    torch.manual_seed(0)
    module = torchvision.models.get_model("vgg16_bn", weights=None).eval()
    net = MaskedNetwork(trace_model(module, (3, 224, 224)))
    count = 8 if quick else 16
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, 224, 224, generator=generator)
    return net, LabelledImages(images, torch.randint(0, 1000, (count,), generator=generator))


def _digits(name: str) -> Callable[[bool], tuple[MaskedNetwork, LabelledImages]]:
    def build(quick: bool) -> tuple[MaskedNetwork, LabelledImages]:
        loaded = load_model(name)
        data = loaded.spec.eval_data(None, calibration_size=None, test_size=None)
        return MaskedNetwork(trace_model(loaded.module, loaded.spec.input_shape)), data.calibration

    return build


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            "vgg16_bn",
            (128, 256, 512),
            (128,),
            _vgg16_bn,
            units=("features.0", "classifier.0"),
            quick_units=("classifier.0",),
        ),
        *(
            Case(name, (4, 16), (16,), _digits(name), allocators=("tensors",), warm_runs=1)
            for name in ("digits-alexnet", "digits-vgg-bn", "digits-convnext")
        ),
    )
}
QUICK_CASES = ("vgg16_bn", "digits-vgg-bn")


# --------------------------------------------------------------------------- child
def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _unit_indices(net: MaskedNetwork, names: Sequence[str] | None) -> list[int]:
    if names is None:
        return list(range(len(net.units)))
    by_name = {u.name: u.index for u in net.units}
    return [by_name[name] for name in names]


def _score(
    scorer: DivergenceScorer, net: MaskedNetwork, calibration: LabelledImages, units: list[int]
) -> list[list[float]]:
    """Full `score()` when every unit is asked for, else one ablation block per unit."""
    if len(units) == len(net.units):
        return [s[:SPOT_NEURONS].tolist() for s in scorer.score(net, calibration)]
    spots = []
    for index in units:
        block = scorer.plan(net, index, len(calibration)).ablations
        neurons = range(0, max(block, SPOT_NEURONS))
        spots.append(scorer.score_unit(net, index, calibration, neurons=neurons)[:SPOT_NEURONS])
    return [s.tolist() for s in spots]


def _before(net: MaskedNetwork, calibration: LabelledImages) -> None:
    """What the scorer used to hold: the whole-set reference and first-unit activations."""
    prefix, _ = net.split_after(net.units[0].sync_node)
    with torch.inference_mode():
        reference = torch.softmax(net(calibration.images), dim=-1)
        live = prefix(calibration.images)
    del reference, live


def child(case_name: str, budget_mb: int, quick: bool) -> dict[str, Any]:
    case = CASES[case_name]
    net, calibration = case.build(quick)
    units = _unit_indices(net, case.quick_units if quick and case.quick_units else case.units)
    with torch.inference_mode():
        net(calibration.images[:1])  # kernels and thread pools, outside the measurement
    weights = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    scorer = DivergenceScorer(memory_budget_mb=budget_mb)
    plans = [scorer.plan(net, i, len(calibration)) for i in units]
    cold = _status_bytes("VmRSS")
    for _ in range(case.warm_runs if budget_mb != BEFORE else 0):
        _score(scorer, net, calibration, units)
    base = _status_bytes("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    spots = (
        _before(net, calibration)
        if budget_mb == BEFORE
        else _score(scorer, net, calibration, units)
    )
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM") - base
    return {
        "peak_mb": peak / MB,
        "planned_mb": max(p.peak_bytes() for p in plans) / MB,
        "weights_mb": weights / MB,
        "base_rss_mb": base / MB,
        "warm_up_growth_mb": (base - cold) / MB,  # kept by the warm-up runs: kernel caches
        "seconds": seconds,
        "images": len(calibration),
        "units": [net.units[i].name for i in units],
        "chunks": [[p.image_chunk, p.ablations] for p in plans],
        "spots": spots,
    }


# --------------------------------------------------------------------------- parent
def measure_one(case: str, budget_mb: int, allocator: str, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench_s3_memory", "--child", case, str(budget_mb)]
    env = {**os.environ, **ALLOCATORS[allocator], "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(
        [*command, *(["--quick"] if quick else [])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"child {case} {budget_mb} MB failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_case(case: Case, quick: bool) -> list[dict[str, Any]]:
    budgets = case.quick_budgets_mb if quick else case.budgets_mb
    allocators = ("tensors",) if quick else case.allocators
    rows = []
    for budget in budgets:
        row: dict[str, Any] = {"model": case.name, "budget_mb": budget}
        for allocator in allocators:
            measured = measure_one(case.name, budget, allocator, quick)
            row[f"peak_mb[{allocator}]"] = measured.pop("peak_mb")
            row[f"seconds[{allocator}]"] = measured.pop("seconds")
            row.update(measured)
        rows.append(row)
    if case.name == "vgg16_bn" and not quick:
        before = measure_one(case.name, BEFORE, "tensors", quick)
        rows.append({"model": case.name, "budget_mb": None, "before": True, **before})
    _compare_spots(rows)
    return rows


def _compare_spots(rows: list[dict[str, Any]]) -> None:
    """Max |score difference| on the spot neurons against the largest budget's run."""
    scored = [r for r in rows if not r.get("before")]
    reference = np.concatenate([np.asarray(s) for s in scored[-1]["spots"]])
    for row in scored:
        spots = np.concatenate([np.asarray(s) for s in row["spots"]])
        row["max_abs_score_diff"] = float(np.abs(spots - reference).max())


def run(quick: bool = False) -> BenchResult:
    names = QUICK_CASES if quick else tuple(CASES)
    rows = [row for name in names for row in run_case(CASES[name], quick)]
    for row in rows:
        if row.get("budget_mb"):
            row["within_budget"] = row["peak_mb[tensors]"] <= row["budget_mb"]
    scored = [r for r in rows if r.get("budget_mb")]
    return BenchResult(
        name=NAME,
        settings={
            "quick": quick,
            "torch_threads": torch.get_num_threads(),
            "allocators": {k: v or "glibc defaults" for k, v in ALLOCATORS.items()},
            "code": code_state(),
        },
        rows=rows,
        summary={
            "target_met": all(r["within_budget"] for r in scored),
            "max_peak_over_budget": max(r["peak_mb[tensors]"] / r["budget_mb"] for r in scored),
            "max_abs_score_diff": max(r["max_abs_score_diff"] for r in scored),
        },
        notes=[
            "peak = VmHWM - VmRSS before scoring (weights, images, libraries excluded), one "
            "child process per row; tensors: MALLOC_MMAP_THRESHOLD_=65536, default: glibc.",
            "vgg16_bn: one ablation block per unit over every image chunk (features.0, "
            "classifier.0); digits: full score() on 256 calibration images, measured on the "
            "second run.",
            "score diff: max |s3| difference on the first 4 neurons of every scored unit, "
            "against the largest budget.",
            "target: peak (tensors) <= budget for every row.",
        ],
    )


COLUMNS = (
    "model",
    "budget MB",
    "planned MB",
    "peak MB (tensors)",
    "peak MB (default malloc)",
    "within",
    "weights MB",
    "warm-up MB",
    "chunk x ablations",
    "max |Δs3|",
    "s",
)


def _row(r: dict[str, Any]) -> list[object]:
    before = bool(r.get("before"))
    chunks = " ".join(f"{c}x{a}" for c, a in r["chunks"])
    return [
        r["model"] + (" (before: whole set)" if before else ""),
        "-" if before else r["budget_mb"],
        None if before else r["planned_mb"],
        r["peak_mb[tensors]"] if not before else r["peak_mb"],
        r.get("peak_mb[default]"),
        "" if before else ("yes" if r["within_budget"] else "NO"),
        r["weights_mb"],
        r.get("warm_up_growth_mb"),
        f"{r['images']} images" if before else chunks,
        None if before else r["max_abs_score_diff"],
        r.get("seconds[tensors]", r.get("seconds")),
    ]


def table(result: BenchResult) -> Table:
    return make_table("s3 peak memory vs budget", COLUMNS, [_row(r) for r in result.rows])


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    result.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    result.add_argument("--child", nargs=2, metavar=("CASE", "BUDGET_MB"), help=argparse.SUPPRESS)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.child:
        case, budget = args.child
        print(json.dumps(child(case, int(budget), args.quick)))
        return
    result = run(quick=args.quick)
    report(result, table(result))


if __name__ == "__main__":
    main()
