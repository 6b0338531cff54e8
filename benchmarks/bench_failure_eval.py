"""Failure-set evaluation throughput of `FailureEvaluator.evaluate` vs the plain forward.

All 15 failure sets of ND=4 (0..3 failed devices). Throughput is images x failure sets per
second. `FailureEvaluator` runs each distinct mask configuration once, so it is reported per
*requested* failure set and per *evaluated* configuration. The baseline is the original
`nn.Module` under `torch.inference_mode` over images x evaluated configurations, batched the
same way as the evaluator (``max_batch`` samples per forward, whole image chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision
from rich.table import Table
from torch import nn

from benchmarks._common import (
    BenchResult,
    make_table,
    measure,
    measure_interleaved,
    ms,
    quick_parser,
    report,
    time_once,
)
from robustdice_core.failures import FailureEvaluator, failure_sets
from robustdice_core.importance import compute_scores
from robustdice_core.masking import MaskedNetwork, repeat_groups
from robustdice_core.partition import LOP, Partition, RobustDiCE
from robustdice_core.units import trace_model
from robustdice_core.zoo import LabelledImages, load_model

NAME = "failure_eval"
NUM_DEVICES = 4
MAX_BATCH = 8192  # FailureEvaluator's default
TARGET_RATIO = 1.3
SCORE_NAMES = ("s1", "s2", "s3")


@dataclass
class Case:
    """One model and test set with the partitions to evaluate on it."""

    label: str
    module: nn.Module
    net: MaskedNetwork
    data: LabelledImages
    partitions: dict[str, Partition]


def digits_case(test_size: int | None) -> Case:
    loaded = load_model("digits-vgg-bn")
    spec = loaded.spec
    data = spec.eval_data(None, calibration_size=None, test_size=test_size)
    net = MaskedNetwork(trace_model(loaded.module, spec.input_shape))
    scores = compute_scores(
        net, data.calibration, list(SCORE_NAMES), weights_hash=loaded.weights_hash()
    )
    sizes = [u.num_neurons for u in net.units]
    partitions = {
        "LOP": LOP().partition(sizes, NUM_DEVICES),
        "RobustDiCE@0.3": RobustDiCE(scores.points(SCORE_NAMES), 0.3).partition(
            sizes, NUM_DEVICES
        ),
    }
    return Case("digits-vgg-bn", loaded.module, net, data.test, partitions)


def alexnet_case(images: int, seed: int = 0) -> Case:
    torch.manual_seed(seed)
    module = torchvision.models.get_model("alexnet", weights=None).eval()
    generator = torch.Generator().manual_seed(seed)
    data = LabelledImages(
        torch.randn(images, 3, 224, 224, generator=generator),
        torch.randint(0, 1000, (images,), generator=generator),
    )
    net = MaskedNetwork(trace_model(module, (3, 224, 224)))
    sizes = [u.num_neurons for u in net.units]
    return Case("alexnet (random)", module, net, data, {"LOP": LOP().partition(sizes, 4)})


def distinct_configs(partition: Partition, sets: Sequence[tuple[int, ...]]) -> int:
    """Mask configurations the evaluator actually runs (it deduplicates identical ones)."""
    masks = np.concatenate(partition.survival_masks(sets), axis=1)
    return int(np.unique(masks, axis=0).shape[0])


def plain_forward(module: nn.Module, data: LabelledImages, groups: int) -> Callable[[], None]:
    """The baseline: ``groups`` copies of the test set, batched like `FailureEvaluator`."""
    chunk = min(len(data), MAX_BATCH)
    per_forward = max(1, MAX_BATCH // chunk)

    def run() -> None:
        with torch.inference_mode():
            for g0 in range(0, groups, per_forward):
                g = min(per_forward, groups - g0)
                for start in range(0, len(data), chunk):
                    images = data.images[start : start + chunk]
                    labels = data.labels[start : start + chunk]
                    predicted = module(repeat_groups(images, g)).argmax(-1)
                    (predicted.view(g, -1) == labels).sum(dim=1)

    return run


def bench_partition(
    case: Case, evaluator: FailureEvaluator, method: str, repeats: int
) -> dict[str, Any]:
    partition = case.partitions[method]
    sets = failure_sets(NUM_DEVICES, range(NUM_DEVICES))
    configs = distinct_configs(partition, sets)
    fns: dict[str, Callable[[], object]] = {
        "masked": lambda: evaluator.evaluate(partition, sets),
        "plain_configs": plain_forward(case.module, case.data, configs),
    }
    if configs != len(sets):
        fns["plain_requested"] = plain_forward(case.module, case.data, len(sets))
    timings = measure_interleaved(fns, repeats=repeats, warmup=1)
    prep = measure(lambda: partition.survival_masks(sets), repeats=5)
    masked = timings["masked"].median
    plain = timings["plain_configs"].median
    plain_requested = timings.get("plain_requested", timings["plain_configs"]).median
    images = len(case.data)
    return {
        "model": case.label,
        "partition": method,
        "images": images,
        "failure_sets": len(sets),
        "evaluated_configs": configs,
        "replication_factor": partition.replication_factor,
        "timings": {name: t.to_dict() for name, t in timings.items()},
        "mask_prep_s": prep.median,
        "masked_per_s_requested": images * len(sets) / masked,
        "masked_per_s_evaluated": images * configs / masked,
        "plain_per_s": images * configs / plain,
        "ratio_masked_over_plain": masked / plain,
        "ratio_masked_over_plain_requested": masked / plain_requested,
        "target_met": masked / plain <= TARGET_RATIO,
    }


def bench_case(case: Case, repeats: int) -> list[dict[str, Any]]:
    setup_s, evaluator = time_once(lambda: FailureEvaluator(case.net, case.data))
    rows = [bench_partition(case, evaluator, method, repeats) for method in case.partitions]
    for row in rows:
        row["evaluator_setup_s"] = setup_s
    return rows


def run(quick: bool = False) -> BenchResult:
    digits_images = 100 if quick else None  # None: the whole 500-image test split
    alexnet_images = 8 if quick else 32
    rows = bench_case(digits_case(digits_images), repeats=3 if quick else 15)
    rows += bench_case(alexnet_case(alexnet_images), repeats=1 if quick else 3)
    worst = max(r["ratio_masked_over_plain"] for r in rows)
    return BenchResult(
        name=NAME,
        settings={
            "num_devices": NUM_DEVICES,
            "failure_sets": "failure_sets(4, range(4)) (15 sets)",
            "max_batch": MAX_BATCH,
            "quick": quick,
            "baseline": "original nn.Module, inference_mode, images x evaluated configs",
        },
        rows=rows,
        summary={
            "worst_ratio_masked_over_plain": worst,
            "target_ratio": TARGET_RATIO,
            "target_met": worst <= TARGET_RATIO,
        },
        notes=[
            "ratio = masked / plain wall time over the same images x evaluated configs.",
            "req. ratio = masked vs plain over images x all requested failure sets.",
            f"target: masked/plain <= {TARGET_RATIO}.",
        ],
    )


def table(result: BenchResult) -> Table:
    rows = [
        [
            r["model"],
            r["partition"],
            f"{r['images']}x{r['failure_sets']} ({r['evaluated_configs']})",
            ms(r["timings"]["masked"]["median_s"]),
            ms(r["timings"]["plain_configs"]["median_s"]),
            r["masked_per_s_requested"],
            r["masked_per_s_evaluated"],
            r["plain_per_s"],
            r["ratio_masked_over_plain"],
            r["ratio_masked_over_plain_requested"],
            ms(r["mask_prep_s"]),
        ]
        for r in result.rows
    ]
    columns = [
        "model",
        "partition",
        "imgs x sets (configs)",
        "masked ms",
        "plain ms",
        "req/s",
        "eval/s",
        "plain/s",
        "ratio",
        "req. ratio",
        "mask prep ms",
    ]
    return make_table("Failure-set evaluation (ND=4, 15 sets, median)", columns, rows)


def main(argv: Sequence[str] | None = None) -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    result = run(quick=args.quick)
    report(result, table(result))


if __name__ == "__main__":
    main()
