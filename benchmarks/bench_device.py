"""Device throughput: plain forward, masked failure evaluation and s3 on the ImageNet models.

For AlexNet, VGG16-BN and ConvNeXt-Tiny (the zoo's torchvision architectures with its seeded
random weights, 224 x 224 random images) on one device (`--device auto|cpu|cuda[:N]`,
resolved by `ComputeDevice` like `dse --device`):

1. plain: the unpartitioned `nn.Module` (``inference_mode``, full float32 like the evaluator)
   over the test images, batched like the evaluator: image chunks moved to the device, and
   as many copies of a chunk per forward as one evaluator forward holds (at most the
   configurations it computes; as in `bench_failure_eval`), images/s;
2. masked: `FailureEvaluator.evaluate` of one 4-device partition (LOP, or RobustDiCE on s1)
   over the failure sets one trial of the default study evaluates (`StudySettings()`: ND 4,
   ``--failures 1``, worst-case Top-1: the no-failure set plus the 4 single failures),
   images x failure sets / s, timed interleaved with (1); ratio = masked / plain wall time per
   image and failure set. The evaluator is reused across trials, as in a study, so the
   no-failure configuration is memoised after the first call (4 of the 5 sets run);
3. the time per trial this implies for a 1000-image ImageNet validation subset
   (the zoo's default test size): failure sets x 1000 / masked throughput;
4. s3: `DivergenceScorer` under its memory budget (default: 512 MB on the CPU, half the free
   memory on CUDA) on ``--calibration`` random images: one ablation block (or
   ``--s3-neurons``) of each of ``--s3-units`` evenly spaced units (8 on CUDA, 4 on the
   CPU by default; on CUDA a block is usually the whole unit), timed
   per unit with `_score_unit` after one reference forward (as in `bench_s3`). Throughput is
   neuron x image ablations per second and the ablations' Conv2d/Linear FLOP/s (as
   `bench_s3`). The whole `score()` time is extrapolated from the work (Conv2d/Linear FLOPs of
   the part before the sync point once per image, of the part after it per image and
   neuron): a sampled unit's time scaled by its full work over the work done, a unit not
   sampled at the sampled units' FLOP/s; then scaled to the 256 calibration images of `dse`.

On CUDA every timed call ends with a synchronisation, and the peak allocated CUDA memory of
each phase (above what was allocated when it started) is recorded; s3's is compared with its
budget. Results: `benchmarks/results/device.json` (`--quick`: `device.quick.json`).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table
from torch import nn

from benchmarks._common import (
    BenchResult,
    code_state,
    console,
    make_table,
    measure_interleaved,
    quick_parser,
    report,
    time_once,
)
from benchmarks.bench_s3 import graph_flops
from dse import StudySettings
from robustdice_core._device import ComputeDevice, exact_float32, memory_budget_bytes
from robustdice_core._errors import InvalidParameterError
from robustdice_core.failures import FailureEvaluator, failure_sets
from robustdice_core.importance import DivergenceScorer, compute_scores
from robustdice_core.importance._divergence import DEFAULT_BUDGET_MB as S3_CPU_BUDGET_MB
from robustdice_core.masking import MaskedNetwork, repeat_groups
from robustdice_core.partition import LOP, Partition, RobustDiCE
from robustdice_core.units import trace_model
from robustdice_core.zoo import MODELS, RANDOM_WEIGHTS, LabelledImages

NAME = "device"
ALL_MODELS = ("alexnet", "vgg16_bn", "convnext_tiny")
QUICK_MODELS = ("alexnet",)
PARTITIONS = ("lop", "robustdice")
ROBUSTDICE_THRESHOLD = 0.3  # as bench_failure_eval
TRIAL_IMAGES = 1000  # the zoo's default ImageNet test size (`TorchvisionSpec._eval_data`)
DSE_CALIBRATION = 256  # the zoo's default ImageNet calibration size
MB = 2**20


@dataclass(frozen=True)
class Plan:
    """What one run measures, with every default resolved."""

    device: str  # the resolved torch device, e.g. "cuda:0"
    requested: str  # as given: auto, cpu, cuda, cuda:N
    models: tuple[str, ...]
    images: int
    calibration: int
    repeats: int
    partition: str
    batch_size: int | None  # evaluator samples per forward; None: from memory
    s3_units: int  # evenly spaced units scored (all when at least the model's units)
    s3_neurons: int | None  # neurons ablated per scored unit; None: one ablation block
    s3_budget_mb: int | None  # None: the scorer's default for the device
    quick: bool

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def make_plan(
    *,
    device: str = "auto",
    models: Sequence[str] | None = None,
    images: int | None = None,
    calibration: int | None = None,
    repeats: int | None = None,
    partition: str = "lop",
    batch_size: int | None = None,
    s3_units: int | None = None,
    s3_neurons: int | None = None,
    s3_budget_mb: int | None = None,
    quick: bool = False,
) -> Plan:
    """Defaults: on CUDA 1000 test images and 8 s3 units; on the CPU 16 images and 4 s3
    units; ``quick``: AlexNet, 8 images, 8 calibration images, 2 s3 units at a 128 MB s3
    budget, one repeat (224 x 224 throughout)."""
    choice = ComputeDevice.parse(device)
    resolved = choice.resolve()
    cuda = resolved.type == "cuda"
    chosen = tuple(models) if models else (QUICK_MODELS if quick else ALL_MODELS)
    unknown = [m for m in chosen if m not in ALL_MODELS]
    if unknown:
        raise SystemExit(f"`--models`: unknown {unknown}; choose from {', '.join(ALL_MODELS)}.")
    if partition not in PARTITIONS:
        raise SystemExit(f"`--partition` must be one of {', '.join(PARTITIONS)}.")
    default_images = 8 if quick else (TRIAL_IMAGES if cuda else 16)
    return Plan(
        device=str(resolved),
        requested=str(choice),
        models=chosen,
        images=images or default_images,
        calibration=calibration or (8 if quick else 16),
        repeats=repeats or (1 if quick else 3),
        partition=partition,
        batch_size=batch_size,
        s3_units=s3_units if s3_units is not None else (2 if quick else (8 if cuda else 4)),
        s3_neurons=s3_neurons,
        s3_budget_mb=s3_budget_mb if s3_budget_mb is not None else (128 if quick else None),
        quick=quick,
    )


# --------------------------------------------------------------------------- device
def device_name(device: torch.device) -> str:
    """The card's name on CUDA, else the CPU's model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": device_name(device),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        info |= {
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
            "capability": list(torch.cuda.get_device_capability(device)),
            "memory_total_mb": total / MB,
            "memory_free_at_start_mb": free / MB,
        }
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation, so wall time covers the device's work."""

    def run() -> None:
        fn()
        synchronize(device)

    return run


class PeakMemory:
    """Peak allocated CUDA memory of a phase, above what was allocated when it started."""

    def __init__(self) -> None:
        self.above_start_mb: float | None = None
        self.absolute_mb: float | None = None


@contextmanager
def cuda_peak(device: torch.device) -> Iterator[PeakMemory]:
    peak = PeakMemory()
    if device.type != "cuda":
        yield peak
        return
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    try:
        yield peak
    finally:
        synchronize(device)
        top = torch.cuda.max_memory_allocated(device)
        peak.above_start_mb = (top - start) / MB
        peak.absolute_mb = top / MB


# --------------------------------------------------------------------------- models
@dataclass
class Case:
    """One model on the device, with its test and calibration images (on the CPU)."""

    name: str
    module: nn.Module
    net: MaskedNetwork
    test: LabelledImages
    calibration: LabelledImages
    build_s: float


def random_images(count: int, shape: tuple[int, ...], seed: int) -> LabelledImages:
    generator = torch.Generator().manual_seed(seed)
    return LabelledImages(
        torch.randn(count, *shape, generator=generator),
        torch.randint(0, 1000, (count,), generator=generator),
    )


def build_case(name: str, plan: Plan) -> Case:
    """The zoo's architecture with its seeded random weights (as `load_model` gives when no
    weights are stored), traced and moved to the device."""
    start = time.perf_counter()
    spec = MODELS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = spec.build().eval()
    net = MaskedNetwork(trace_model(module, spec.input_shape, name=name)).to(plan.torch_device)
    module = module.to(plan.torch_device)
    test = random_images(plan.images, spec.input_shape, seed=1)
    calibration = random_images(plan.calibration, spec.input_shape, seed=2)
    synchronize(plan.torch_device)
    return Case(name, module, net, test, calibration, time.perf_counter() - start)


def make_partition(case: Case, method: str, num_devices: int) -> Partition:
    sizes = [u.num_neurons for u in case.net.units]
    if method == "lop":
        return LOP().partition(sizes, num_devices)
    scores = compute_scores(
        case.net, None, ["s1"], weights_hash=f"bench-device-{case.name}", use_cache=False
    )
    return RobustDiCE(scores.points(["s1"]), ROBUSTDICE_THRESHOLD).partition(sizes, num_devices)


# --------------------------------------------------------------------------- evaluation
def plain_forward(
    module: nn.Module,
    data: LabelledImages,
    groups: int,
    samples_per_forward: int,
    device: torch.device,
    *,
    exact: bool,
) -> Callable[[], None]:
    """The unpartitioned model over ``groups`` copies of the test images, batched like
    `FailureEvaluator` (image chunks moved to the device, ``samples_per_forward`` samples per
    forward), Top-1 hits counted: the evaluator's work without masks (as `bench_failure_eval`)."""
    chunk = min(len(data), samples_per_forward)
    per_forward = max(1, samples_per_forward // chunk)

    def run() -> None:
        hits = torch.zeros((), dtype=torch.int64, device=device)
        with torch.inference_mode(), exact_float32() if exact else nullcontext():
            for start in range(0, len(data), chunk):
                images = data.images[start : start + chunk].to(device)
                labels = data.labels[start : start + chunk].to(device)
                for g0 in range(0, groups, per_forward):
                    g = min(per_forward, groups - g0)
                    predicted = module(repeat_groups(images, g)).argmax(-1)
                    hits += (predicted.view(g, -1) == labels).sum()
        int(hits)  # synchronises

    return run


def trial_sets() -> tuple[StudySettings, list[tuple[int, ...]]]:
    """The failure sets one trial of the default study evaluates."""
    settings = StudySettings()
    return settings, failure_sets(settings.devices, settings.failure_sizes())


def configs_per_trial(partition: Partition, sets: Sequence[tuple[int, ...]]) -> tuple[int, int]:
    """Distinct mask configurations of ``sets``, and how many of them a reused evaluator
    runs per trial (the intact configuration is memoised after the first evaluation)."""
    masks = np.concatenate(partition.survival_masks(sets), axis=1)
    distinct = np.unique(masks, axis=0)
    intact = int(distinct.all(axis=1).any())
    return int(distinct.shape[0]), int(distinct.shape[0]) - intact


def bench_evaluation(case: Case, plan: Plan) -> dict[str, Any]:
    device = plan.torch_device
    settings, sets = trial_sets()
    partition = make_partition(case, plan.partition, settings.devices)
    setup_s, evaluator = time_once(
        lambda: FailureEvaluator(case.net, case.test, batch_size=plan.batch_size)
    )
    distinct, computed = configs_per_trial(partition, sets)
    spf = evaluator.samples_per_forward
    # plain: as many copies of the images as one of the evaluator's forwards holds (at most
    # the configurations it computes), so both run the same samples per forward
    groups = min(computed, max(1, spf // min(len(case.test), spf)))
    fns: dict[str, Callable[[], object]] = {
        "plain": plain_forward(case.module, case.test, groups, spf, device, exact=True),
        "masked": timed(lambda: evaluator.evaluate(partition, sets), device),
    }
    if device.type == "cuda":  # torch's defaults: TF32 convolutions (what the project avoids)
        fns["plain_torch_default"] = plain_forward(
            case.module, case.test, groups, spf, device, exact=False
        )
    with cuda_peak(device) as plain_peak:
        fns["plain"]()  # also the warm-up
    with cuda_peak(device) as masked_peak:
        fns["masked"]()  # the first evaluation: also computes the intact configuration
    if "plain_torch_default" in fns:
        fns["plain_torch_default"]()  # warm-up: its own convolution algorithms
    timings = measure_interleaved(fns, repeats=plan.repeats, warmup=0)
    images = len(case.test)
    plain_s = timings["plain"].median
    masked_s = timings["masked"].median
    plain_fps = images * groups / plain_s
    masked_fps = images * len(sets) / masked_s
    row: dict[str, Any] = {
        "partition": partition.method,
        "replication_factor": partition.replication_factor,
        "failure_sets_per_trial": len(sets),
        "distinct_configs": distinct,
        "configs_computed_per_trial": computed,
        "samples_per_forward": spf,
        "plain_groups": groups,
        "evaluator_setup_s": setup_s,
        "timings": {name: t.to_dict() for name, t in timings.items()},
        "plain_fps": plain_fps,
        "masked_fps_per_set": masked_fps,
        "ratio_masked_over_plain": plain_fps / masked_fps,
        "ratio_per_computed_config": plain_fps / (images * computed / masked_s),
        "trial_s_measured": masked_s,
        "trial_s_1000_images": len(sets) * TRIAL_IMAGES / masked_fps,
        "peak_cuda_mb_plain": plain_peak.above_start_mb,
        "peak_cuda_mb_masked": masked_peak.above_start_mb,
        "peak_cuda_mb_absolute": _max_or_none(plain_peak.absolute_mb, masked_peak.absolute_mb),
    }
    if "plain_torch_default" in timings:
        row["plain_fps_torch_default"] = images * groups / timings["plain_torch_default"].median
    return row


def _max_or_none(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


# --------------------------------------------------------------------------- s3
def spaced_units(count: int, wanted: int) -> list[int]:
    if wanted >= count:
        return list(range(count))
    return sorted({int(round(x)) for x in np.linspace(0, count - 1, max(1, wanted))})


def bench_s3(case: Case, plan: Plan) -> dict[str, Any]:
    device = plan.torch_device
    net, images = case.net, case.calibration.images
    count = len(images)
    scorer = DivergenceScorer(memory_budget_mb=plan.s3_budget_mb)
    chosen = spaced_units(len(net.units), plan.s3_units)
    if device.type == "cuda":
        # the default budget is half the memory free now; hand back what the evaluation's
        # forwards left in torch's cache (`dse` scores before it evaluates)
        torch.cuda.empty_cache()
    budget_mb = memory_budget_bytes(device, plan.s3_budget_mb, S3_CPU_BUDGET_MB) / MB
    planned_mb = scorer.budget_bytes(net) / MB
    with torch.inference_mode(), exact_float32():
        net(images[:1].to(device))  # kernels, thread pools and cuDNN handles
    synchronize(device)
    units: list[dict[str, Any]] = []
    with cuda_peak(device) as peak, torch.inference_mode(), exact_float32():
        reference_s, reference = time_once(lambda: _synced(scorer._reference(net, images), device))
        for index in range(len(net.units)):
            units.append(_s3_unit(net, scorer, index, count, index in chosen, plan.s3_neurons))
        for row in units:
            if row["sampled"]:
                start = time.perf_counter()
                scorer._score_unit(
                    net, row["index"], images, reference, neurons=range(row["ablated"])
                )  # returns a CPU array: the device's work is done
                row["wall_s"] = time.perf_counter() - start
    return _s3_summary(units, reference_s, count, budget_mb, planned_mb, peak)


def _synced(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    synchronize(device)
    return value


def _s3_unit(
    net: MaskedNetwork,
    scorer: DivergenceScorer,
    index: int,
    images: int,
    sampled: bool,
    neurons: int | None,
) -> dict[str, Any]:
    """Static figures of one unit; ``ablated``: one ablation block, or ``neurons``.

    Work (Conv2d/Linear FLOPs): the part before the sync point once per image, the part after
    it once per image and ablated neuron."""
    unit = net.units[index]
    prefix, suffix = net.split_after(unit.sync_node)
    prefix_flops, suffix_flops = graph_flops(prefix), graph_flops(suffix)
    ablation_plan = scorer.plan(net, index, images)
    ablated = min(unit.num_neurons, neurons or ablation_plan.ablations)
    return {
        "unit": unit.name,
        "index": index,
        "neurons": unit.num_neurons,
        "sampled": sampled,
        "ablated": ablated,
        "image_chunk": ablation_plan.image_chunk,
        "ablations_per_forward": ablation_plan.ablations,
        "planned_peak_mb": ablation_plan.peak_bytes() / MB,
        "prefix_flops_per_image": prefix_flops,
        "suffix_flops_per_image": suffix_flops,
        "ablation_flops": ablated * images * suffix_flops,
        "work_flops": images * (prefix_flops + ablated * suffix_flops),
        "full_work_flops": images * (prefix_flops + unit.num_neurons * suffix_flops),
    }


def _s3_summary(
    units: list[dict[str, Any]],
    reference_s: float,
    images: int,
    budget_mb: float,
    planned_mb: float,
    peak: PeakMemory,
) -> dict[str, Any]:
    """Throughput of the sampled units, and `score()` over every unit extrapolated: a sampled
    unit by its work for all neurons over the work done, the others at the sampled FLOP/s."""
    sampled = [u for u in units if u["sampled"]]
    wall = sum(u["wall_s"] for u in sampled)
    work_per_s = sum(u["work_flops"] for u in sampled) / wall
    estimate = reference_s
    for u in units:
        if not u["sampled"]:
            u["full_s_estimate"] = u["full_work_flops"] / work_per_s
        elif u["work_flops"] > 0:
            u["full_s_estimate"] = u["wall_s"] * u["full_work_flops"] / u["work_flops"]
        else:
            u["full_s_estimate"] = u["wall_s"] * u["neurons"] / u["ablated"]
        estimate += u["full_s_estimate"]
    within = None if peak.above_start_mb is None else peak.above_start_mb <= budget_mb
    return {
        "calibration_images": images,
        "units_total": len(units),
        "units_sampled": len(sampled),
        "neurons_total": sum(u["neurons"] for u in units),
        "neurons_ablated": sum(u["ablated"] for u in sampled),
        "reference_s": reference_s,
        "wall_s": wall,
        "ablations_per_s": sum(u["ablated"] for u in sampled) * images / wall,
        "ablation_flops_per_s": sum(u["ablation_flops"] for u in sampled) / wall,
        "work_flops_per_s": work_per_s,
        "sampled_share_of_work": sum(u["work_flops"] for u in sampled)
        / max(1, sum(u["full_work_flops"] for u in units)),
        "full_score_s_estimate": estimate,
        f"full_score_s_estimate_{DSE_CALIBRATION}": estimate * DSE_CALIBRATION / images,
        "budget_mb": budget_mb,
        "planned_budget_mb": planned_mb,
        "peak_cuda_mb": peak.above_start_mb,
        "peak_cuda_mb_absolute": peak.absolute_mb,
        "within_budget": within,
        "units": units,
    }


# --------------------------------------------------------------------------- run
def bench_model(name: str, plan: Plan) -> dict[str, Any]:
    device = plan.torch_device
    case = build_case(name, plan)
    start = time.perf_counter()
    row: dict[str, Any] = {
        "model": name,
        "units": len(case.net.units),
        "images": len(case.test),
        "build_s": case.build_s,
        "model_flops_per_image": graph_flops(case.net.graph_module),
        **bench_evaluation(case, plan),
    }
    row["s3"] = bench_s3(case, plan)
    row["seconds"] = time.perf_counter() - start
    console.print(f"[dim]{name} on {plan.device}: {row['seconds']:.0f} s[/dim]")
    row["peak_cuda_mb_model"] = _max_or_none(
        row["peak_cuda_mb_absolute"], row["s3"]["peak_cuda_mb_absolute"]
    )
    del case
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def run(plan: Plan | None = None, *, quick: bool = False) -> BenchResult:
    plan = plan or make_plan(quick=quick)
    device = plan.torch_device
    torch.manual_seed(0)
    info = device_info(device)
    start = time.perf_counter()
    rows = [bench_model(name, plan) for name in plan.models]
    total_s = time.perf_counter() - start
    settings, sets = trial_sets()
    return BenchResult(
        name=NAME,
        settings={
            **asdict(plan),
            "device_info": info,
            "weights": RANDOM_WEIGHTS,
            "input_shape": [3, 224, 224],
            "trial": {
                "devices": settings.devices,
                "failures": list(settings.failures),
                "acc_metric": str(settings.acc_metric),
                "failure_sets": [list(s) for s in sets],
                "images": TRIAL_IMAGES,
            },
            "code": code_state(),
        },
        rows=rows,
        summary={
            "device": plan.device,
            "device_name": info["name"],
            "total_s": total_s,
            **{
                r["model"]: {
                    "plain_fps": r["plain_fps"],
                    "masked_fps_per_set": r["masked_fps_per_set"],
                    "ratio_masked_over_plain": r["ratio_masked_over_plain"],
                    "trial_s_1000_images": r["trial_s_1000_images"],
                    "s3_ablations_per_s": r["s3"]["ablations_per_s"],
                    "s3_ablation_flops_per_s": r["s3"]["ablation_flops_per_s"],
                    "s3_full_score_s_estimate_256": r["s3"][
                        f"full_score_s_estimate_{DSE_CALIBRATION}"
                    ],
                }
                for r in rows
            },
        },
        notes=notes(plan, info),
    )


def notes(plan: Plan, info: dict[str, Any]) -> list[str]:
    sets = len(trial_sets()[1])
    result = [
        f"device {plan.device} ({info['name']}), torch {info['torch_version']}, "
        f"{plan.images} random 224x224 test images, partition {plan.partition} on 4 devices.",
        f"masked img x set/s: images x {sets} failure sets (no failure + 4 single failures, "
        "the default study's trial) / wall; the no-failure configuration is memoised by the "
        "reused evaluator, so a trial runs 4 configurations.",
        "ratio = masked / plain wall time per image and failure set (plain: the unpartitioned "
        "model, full float32, batched like the evaluator: the same samples per forward), "
        "timed interleaved.",
        f"s/trial = {sets} x {TRIAL_IMAGES} / masked throughput (a 1000-image validation "
        "subset; test images and transfers as in `dse`, decoding not included).",
        f"s3: {plan.calibration} calibration images; "
        f"{'one ablation block' if plan.s3_neurons is None else f'{plan.s3_neurons} neurons'}"
        " per sampled unit "
        f"(at most {plan.s3_units} evenly spaced units"
        f"); GFLOP/s: the ablations' Conv2d/Linear FLOPs (as bench_s3); 'full s @256': "
        f"`score()` over every unit extrapolated from the work done, scaled to {DSE_CALIBRATION}"
        " calibration images (dse's default).",
    ]
    if plan.torch_device.type == "cpu":
        result.append(
            "CPU: wall times move with the machine's load (see machine.load_average_1_5_15)."
        )
    return result


# --------------------------------------------------------------------------- output
COLUMNS = (
    "model",
    "imgs",
    "plain img/s",
    "masked img x set/s",
    "ratio",
    "s/trial @1000",
    "s3 abl/s",
    "s3 GFLOP/s",
    "s3 units",
    "s3 full s @256",
    "s3 budget MB",
    "peak MB eval/s3",
)


def _row(r: dict[str, Any]) -> list[object]:
    s3 = r["s3"]
    peaks = (r["peak_cuda_mb_masked"], s3["peak_cuda_mb"])
    return [
        r["model"],
        r["images"],
        r["plain_fps"],
        r["masked_fps_per_set"],
        r["ratio_masked_over_plain"],
        r["trial_s_1000_images"],
        s3["ablations_per_s"],
        s3["ablation_flops_per_s"] / 1e9,
        f"{s3['units_sampled']}/{s3['units_total']}",
        s3[f"full_score_s_estimate_{DSE_CALIBRATION}"],
        s3["budget_mb"],
        "-" if peaks[0] is None else f"{peaks[0]:.0f}/{peaks[1]:.0f}",
    ]


def table(result: BenchResult) -> Table:
    s = result.settings
    title = (
        f"Device throughput on {s['device']} ({s['device_info']['name']}), "
        f"{s['partition']} ND=4, 5 failure sets per trial, median of {s['repeats']}"
    )
    return make_table(title, COLUMNS, [_row(r) for r in result.rows])


def parser() -> argparse.ArgumentParser:
    result = quick_parser(__doc__.splitlines()[0])
    result.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    result.add_argument("--models", default=None, help=f"comma-separated, of {ALL_MODELS}")
    result.add_argument(
        "--images", type=int, default=None, help="test images (default 1000 CUDA, 16 CPU)"
    )
    result.add_argument("--calibration", type=int, default=None, help="s3 images (default 16)")
    result.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3)")
    result.add_argument("--partition", choices=PARTITIONS, default="lop")
    result.add_argument(
        "--batch-size", type=int, default=None, help="evaluator samples per forward"
    )
    result.add_argument(
        "--s3-units",
        type=int,
        default=None,
        help="s3 units sampled, evenly spaced (default 8 CUDA, 4 CPU; 999: all)",
    )
    result.add_argument(
        "--s3-neurons", type=int, default=None, help="s3 neurons per unit (default: one block)"
    )
    result.add_argument("--s3-budget-mb", type=int, default=None, help="s3 memory budget")
    return result


def plan_from_args(args: argparse.Namespace) -> Plan:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    return make_plan(
        device=args.device,
        models=models,
        images=args.images,
        calibration=args.calibration,
        repeats=args.repeats,
        partition=args.partition,
        batch_size=args.batch_size,
        s3_units=args.s3_units,
        s3_neurons=args.s3_neurons,
        s3_budget_mb=args.s3_budget_mb,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
    except InvalidParameterError as err:
        raise SystemExit(str(err)) from None
    result = run(plan)
    report(result, table(result))


if __name__ == "__main__":
    main()
