"""s3 (JSD ablation) scoring throughput on AlexNet vs the plain forward's FLOP/s.

The ablations must do, for every unit i with n_i neurons, n_i x images forwards of the network
part after unit i's sync point. Their FLOPs (Conv2d and Linear only, from the fx graph's shape
metadata) divided by the scoring wall time is the achieved FLOP/s, compared with a plain
AlexNet forward at a batch like the scorer's per-forward batch (full-model FLOPs / time).
Per unit, the scorer's own `_score_unit` is timed, and one scorer chunk (mask, repeat, masked
suffix, softmax, JSD) is timed interleaved with a bare suffix forward on the same samples: their
ratio is the scorer's overhead, and the bare forward gives the unit's "suffix FLOP/s".
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.fx as fx
import torchvision
from rich.table import Table
from torch import Tensor, nn

from benchmarks._common import (
    BenchResult,
    make_table,
    measure,
    measure_interleaved,
    quick_parser,
    report,
    time_once,
)
from robustdice_core.importance import DivergenceScorer, jensen_shannon
from robustdice_core.masking import MaskedNetwork, repeat_groups
from robustdice_core.units import trace_model
from robustdice_core.zoo import LabelledImages

NAME = "s3"
INPUT_SHAPE = (3, 224, 224)
CALIBRATION_IMAGES = 16
TARGET_RATIO = 0.7
QUICK_UNITS = 2  # --quick: the last two units (about 15 s)
PLAIN_BATCH_CAP = 256  # a full AlexNet forward at the FC units' batch (~11k) needs ~20 GB


def node_flops(gm: fx.GraphModule, node: fx.Node) -> int:
    """FLOPs of one node for one image: Conv2d and Linear only (elementwise ignored)."""
    if node.op != "call_module":
        return 0
    module = gm.get_submodule(str(node.target))
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return 0
    out_elements = math.prod(int(s) for s in meta.shape[1:])
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return 2 * per_output * out_elements
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * out_elements
    return 0


def graph_flops(gm: fx.GraphModule) -> int:
    return sum(node_flops(gm, node) for node in gm.graph.nodes)


def build(seed: int = 0) -> tuple[nn.Module, MaskedNetwork, LabelledImages]:
    torch.manual_seed(seed)
    module = torchvision.models.get_model("alexnet", weights=None).eval()
    generator = torch.Generator().manual_seed(seed)
    calibration = LabelledImages(
        torch.randn(CALIBRATION_IMAGES, *INPUT_SHAPE, generator=generator),
        torch.randint(0, 1000, (CALIBRATION_IMAGES,), generator=generator),
    )
    return module, MaskedNetwork(trace_model(module, INPUT_SHAPE)), calibration


def unit_plan(net: MaskedNetwork, scorer: DivergenceScorer, index: int) -> dict[str, Any]:
    """Static figures of one unit: suffix FLOPs, ablation FLOPs, samples per forward."""
    unit = net.units[index]
    _, suffix = net.split_after(unit.sync_node)
    per_image = graph_flops(suffix)
    ablations = scorer._ablations_per_forward(suffix, CALIBRATION_IMAGES)
    return {
        "unit": unit.name,
        "index": index,
        "neurons": unit.num_neurons,
        "suffix_flops_per_image": per_image,
        "ablation_flops": unit.num_neurons * CALIBRATION_IMAGES * per_image,
        "ablations_per_forward": ablations,
        "samples_per_forward": min(ablations, unit.num_neurons) * CALIBRATION_IMAGES,
    }


def chunk_timings(
    net: MaskedNetwork, index: int, images: Tensor, reference: Tensor, groups: int
) -> dict[str, float]:
    """One scorer chunk vs one unmasked suffix forward on the same samples, interleaved.

    The chunk repeats the scorer's work for ``groups`` ablations (mask, repeat of the cached
    activations, masked suffix, softmax, JSD); the plain suffix forward takes pre-expanded
    inputs. Their ratio is the scorer's overhead over the bare network work, and is robust to
    the machine's load drifting, unlike comparing separately timed phases.
    """
    unit = net.units[index]
    prefix, suffix = net.split_after(unit.sync_node)
    masks: list[Tensor | None] = [None] * len(net.units)

    def scorer_chunk() -> None:
        mask = torch.ones(groups, unit.num_neurons)
        mask[torch.arange(groups), torch.arange(groups)] = 0.0
        masks[index] = mask
        expanded = [repeat_groups(t, groups) for t in live]
        with net.masked(masks):
            probs = torch.softmax(suffix(*expanded), dim=-1)
        jensen_shannon(reference.repeat(groups, 1), probs).view(groups, -1).double().mean(1)

    with torch.inference_mode():
        live = prefix(images)
        plain_inputs = [repeat_groups(t, groups) for t in live]
        timings = measure_interleaved(
            {"chunk": scorer_chunk, "suffix": lambda: suffix(*plain_inputs)},
            repeats=2,
            warmup=0,
        )
    return {"chunk_s": timings["chunk"].best, "suffix_s": timings["suffix"].best}


def plain_seconds(module: nn.Module, batch: int, repeats: int) -> list[float]:
    images = torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        module(images[:2])  # primitive creation outside the timing
        return list(measure(lambda: module(images), repeats=repeats, warmup=0).times)


def score_units(
    net: MaskedNetwork, scorer: DivergenceScorer, images: Tensor, indices: Sequence[int]
) -> tuple[float, Tensor, dict[int, float]]:
    """Reference forward time, its softmax and the per-unit time of `_score_unit`."""
    with torch.inference_mode():
        reference_s, logits = time_once(lambda: net(images))
        reference = torch.softmax(logits, dim=-1)
        per_unit = {
            i: time_once(partial(scorer._score_unit, net, i, images, reference))[0]
            for i in indices
        }
    return reference_s, reference, per_unit


def selected_units(count: int, quick: bool, units: str | None) -> list[int]:
    if units:
        chosen = sorted({int(u) % count for u in units.split(",") if u.strip()})
        if not chosen:
            raise SystemExit("`--units` must list unit indices, e.g. `--units 5,6,7`.")
        return chosen
    return list(range(count - QUICK_UNITS, count)) if quick else list(range(count))


def run(quick: bool = False, units: str | None = None) -> BenchResult:
    module, net, calibration = build()
    scorer = DivergenceScorer()
    indices = selected_units(len(net.units), quick, units)
    plans = [unit_plan(net, scorer, i) for i in indices]
    dominant = max(plans, key=lambda p: p["ablation_flops"])
    plain_batch = min(int(dominant["samples_per_forward"]), PLAIN_BATCH_CAP)
    plain_repeats = 1 if quick else 2
    plain_before = plain_seconds(module, plain_batch, plain_repeats)
    public_s = None
    if len(indices) == len(net.units) and not quick:
        public_s = time_once(lambda: scorer.score(net, calibration))[0]
    reference_s, reference, per_unit = score_units(net, scorer, calibration.images, indices)
    plain_after = plain_seconds(module, plain_batch, plain_repeats)
    for plan in plans:
        plan["wall_s"] = per_unit[plan["index"]]
        plan["achieved_flops_per_s"] = plan["ablation_flops"] / plan["wall_s"]
        groups = plan["samples_per_forward"] // CALIBRATION_IMAGES
        chunk = chunk_timings(net, plan["index"], calibration.images, reference, groups)
        plan.update(chunk)
        has_work = plan["suffix_flops_per_image"] > 0  # else the "suffix" is just the mask
        plan["chunk_overhead"] = chunk["chunk_s"] / chunk["suffix_s"] if has_work else None
        plan["suffix_flops_per_s"] = (
            plan["suffix_flops_per_image"] * plan["samples_per_forward"] / chunk["suffix_s"]
        )
    return assemble(
        net, plans, public_s, reference_s, plain_batch, plain_before + plain_after, quick
    )


def assemble(
    net: MaskedNetwork,
    plans: list[dict[str, Any]],
    public_s: float | None,
    reference_s: float,
    plain_batch: int,
    plain_times: list[float],
    quick: bool,
) -> BenchResult:
    model_flops = graph_flops(net.graph_module)
    plain_median = statistics.median(plain_times)
    plain_flops_per_s = model_flops * plain_batch / plain_median
    total_flops = sum(p["ablation_flops"] for p in plans)
    breakdown_s = reference_s + sum(p["wall_s"] for p in plans)
    wall_s = public_s if public_s is not None else breakdown_s
    achieved = total_flops / wall_s
    ratio = achieved / plain_flops_per_s
    return BenchResult(
        name=NAME,
        settings={
            "model": "alexnet (random weights)",
            "calibration_images": CALIBRATION_IMAGES,
            "units": [p["index"] for p in plans],
            "memory_budget_mb": DivergenceScorer().memory_budget_mb,
            "quick": quick,
        },
        rows=plans,
        summary={
            "wall_s": wall_s,
            "wall_source": "DivergenceScorer.score" if public_s is not None else "per-unit sum",
            "per_unit_sum_s": breakdown_s,
            "reference_forward_s": reference_s,
            "ablation_flops": total_flops,
            "achieved_flops_per_s": achieved,
            "model_flops_per_image": model_flops,
            "plain_batch": plain_batch,
            "plain_times_s": plain_times,
            "plain_flops_per_s": plain_flops_per_s,
            "ratio_achieved_over_plain": ratio,
            "target_ratio": TARGET_RATIO,
            "target_met": ratio >= TARGET_RATIO,
        },
        notes=[
            f"plain: AlexNet forward at batch {plain_batch} (the dominant unit's scorer batch,"
            f" capped at {PLAIN_BATCH_CAP}), timed before and after scoring; median.",
            "suffix GFLOP/s: bare suffix forward at the scorer's batch; overhead: one scorer"
            " chunk / that forward, timed interleaved (best of 2).",
            f"target: achieved / plain >= {TARGET_RATIO}.",
        ],
    )


COLUMNS = (
    "unit",
    "neurons",
    "samples/fwd",
    "ablation TFLOP",
    "wall s",
    "GFLOP/s",
    "suffix GFLOP/s",
    "overhead",
)


def unit_row(p: dict[str, Any]) -> list[object]:
    return [
        p["unit"],
        p["neurons"],
        p["samples_per_forward"],
        p["ablation_flops"] / 1e12,
        p["wall_s"],
        p["achieved_flops_per_s"] / 1e9,
        p["suffix_flops_per_s"] / 1e9,
        p["chunk_overhead"],
    ]


def summary_rows(s: dict[str, Any], neurons: int) -> list[list[object]]:
    blank = [""] * len(COLUMNS)
    total = [f"total ({s['wall_source']})", neurons, "", s["ablation_flops"] / 1e12]
    total += [s["wall_s"], s["achieved_flops_per_s"] / 1e9]
    plain = [f"plain forward, batch {s['plain_batch']}", *blank[1:5], s["plain_flops_per_s"] / 1e9]
    ratio = ["achieved / plain", *blank[1:5], s["ratio_achieved_over_plain"]]
    return [(row + blank)[: len(COLUMNS)] for row in (total, plain, ratio)]


def table(result: BenchResult) -> Table:
    rows = [unit_row(p) for p in result.rows]
    rows += summary_rows(result.summary, sum(p["neurons"] for p in result.rows))
    return make_table("s3 scoring, AlexNet 224x224, 16 calibration images", COLUMNS, rows)


def parser() -> argparse.ArgumentParser:
    result = quick_parser(__doc__.splitlines()[0])
    result.add_argument(
        "--units", default=None, help="comma-separated unit indices (negative from the end)"
    )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    result = run(quick=args.quick, units=args.units)
    report(result, table(result))


if __name__ == "__main__":
    main()
