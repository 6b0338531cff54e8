"""s3: Jensen-Shannon divergence between the softmax output with and without a neuron.

The neuron is zeroed at its unit's sync point (DESIGN 3.2). The reference softmax is
computed once for the calibration set, in chunks; then, per unit, the calibration set is
processed in image chunks: the activations just after the sync point are computed for the
chunk, and many single-neuron ablations are evaluated per forward of the rest of the
network, as sample groups with one mask each.

Memory: `AblationPlan` sizes the image chunks and the ablations per forward so that
everything the scorer holds at once (the reference probabilities, the chunk's input and
activations after the sync point, the repeated copies one masked forward takes, that
forward's activations, the divergence temporaries, the masks and the sums) stays within
``memory_budget_mb``; the model's weights are not counted. Activations per sample are
estimated from the traced shapes (`activation_bytes_per_sample`). A budget below one image
with one ablation runs one image and one ablation per forward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor

from robustdice_core._device import (
    check_batch_size,
    exact_float32,
    memory_budget_bytes,
    module_device,
)
from robustdice_core.importance._base import ImportanceScorer, require_data
from robustdice_core.masking import MaskedNetwork, activation_bytes_per_sample, repeat_groups
from robustdice_core.zoo import LabelledImages

__all__ = ["AblationPlan", "DivergenceScorer", "jensen_shannon"]

DEFAULT_BUDGET_MB = 512  # on the CPU; on CUDA half the free memory (`memory_budget_bytes`)
# Plans use this share of the budget: the shape-based estimate is within a few percent of the
# measured peak (benchmarks/bench_s3_memory.py), the rest is for what it cannot see
# (convolution workspaces, allocator rounding).
PLANNED_SHARE = 0.9
FLOAT = 4  # bytes of a float32
# [samples, classes] tensors alive while one block's divergence is computed: logits, probs,
# the repeated reference, their mean, four xlogy terms and their sum.
JSD_TEMPORARIES = 9


def jensen_shannon(p: Tensor, q: Tensor) -> Tensor:
    """JSD(p || q) in nats over the last axis (bounded by ln 2)."""
    m = 0.5 * (p + q)
    kl_pm = torch.special.xlogy(p, p) - torch.special.xlogy(p, m)
    kl_qm = torch.special.xlogy(q, q) - torch.special.xlogy(q, m)
    return 0.5 * (kl_pm + kl_qm).sum(dim=-1)


@dataclass(frozen=True)
class AblationPlan:
    """How one unit's ablations are batched under a memory budget.

    Image chunks are the outer loop (the activations after the sync point are computed per
    chunk, never for the whole calibration set), blocks of ``ablations`` neurons the inner.
    Byte figures are per image, ``ablation_bytes`` per sample (image x ablation).
    """

    images: int  # calibration images
    neurons: int
    image_chunk: int  # images per chunk
    ablations: int  # ablations (sample groups) per masked forward
    fixed_bytes: int  # held throughout: reference probabilities of all images, the sums
    held_bytes: int  # per image of the chunk: input, activations after the sync point
    prefix_bytes: int  # per image, while the part before the sync point runs
    ablation_bytes: int  # per sample: repeated inputs, suffix activations, JSD temporaries
    mask_bytes: int  # per ablation: its mask row

    def peak_bytes(self) -> int:
        """The most the plan holds at once (estimated activations; weights not counted)."""
        chunk = self.image_chunk
        prefix_stage = chunk * (self.held_bytes + self.prefix_bytes)
        block = self.ablations * (chunk * self.ablation_bytes + self.mask_bytes)
        return self.fixed_bytes + max(prefix_stage, chunk * self.held_bytes + block)

    @property
    def samples_per_forward(self) -> int:
        return self.image_chunk * min(self.ablations, self.neurons)

    def image_chunks(self) -> Iterator[slice]:
        for start in range(0, self.images, self.image_chunk):
            yield slice(start, min(start + self.image_chunk, self.images))


class DivergenceScorer(ImportanceScorer):
    """Args:
    memory_budget_mb: bounds everything the scorer holds at once (see the module
        docstring); more ablations per forward are faster until memory bandwidth
        dominates. Default: 512 on the CPU, half the free memory on CUDA.
    batch_size: samples (images x ablations) per masked forward, overriding the budget.

    Runs on the network's device (move the `MaskedNetwork` there first). Neither setting
    changes the scores beyond float32 summation order, so neither is part of the cache key.
    """

    name = "s3"

    def __init__(
        self, *, memory_budget_mb: int | None = None, batch_size: int | None = None
    ) -> None:
        check_batch_size(batch_size)
        self.memory_budget_mb = memory_budget_mb
        self.batch_size = batch_size

    def score(self, net: MaskedNetwork, calibration: LabelledImages | None) -> list[np.ndarray]:
        images = require_data(self, calibration).images
        with torch.inference_mode(), exact_float32():
            reference = self._reference(net, images)
            return [self._score_unit(net, i, images, reference) for i in range(len(net.units))]

    def score_unit(
        self,
        net: MaskedNetwork,
        index: int,
        calibration: LabelledImages,
        *,
        neurons: range | None = None,
    ) -> np.ndarray:
        """s3 of unit ``index`` alone, for all its neurons or the ``neurons`` range (spot
        checks, benchmarks); equal to the matching entries of `score`."""
        images = require_data(self, calibration).images
        with torch.inference_mode(), exact_float32():
            reference = self._reference(net, images)
            return self._score_unit(net, index, images, reference, neurons=neurons)

    def budget_bytes(self, net: MaskedNetwork) -> int:
        """The bytes a plan may use on the network's device: `PLANNED_SHARE` of the budget."""
        budget = memory_budget_bytes(module_device(net), self.memory_budget_mb, DEFAULT_BUDGET_MB)
        return int(budget * PLANNED_SHARE)

    def plan(self, net: MaskedNetwork, index: int, images: int) -> AblationPlan:
        """The batching of unit ``index`` over ``images`` calibration images."""
        unit = net.units[index]
        prefix, suffix = net.split_after(unit.sync_node)
        classes = _output_width(net.graph_module)
        live = _live_bytes(prefix)
        sizes = AblationPlan(
            images=images,
            neurons=unit.num_neurons,
            image_chunk=1,
            ablations=1,
            fixed_bytes=images * classes * FLOAT + unit.num_neurons * 8,
            held_bytes=math.prod(net.example_shape) * FLOAT + live,
            prefix_bytes=activation_bytes_per_sample(prefix),
            ablation_bytes=live
            + activation_bytes_per_sample(suffix)
            + JSD_TEMPORARIES * classes * FLOAT,
            mask_bytes=unit.num_neurons * FLOAT,
        )
        if self.batch_size is not None:
            return _fixed_batch(sizes, self.batch_size)
        return _within_budget(sizes, self.budget_bytes(net))

    def _reference(self, net: MaskedNetwork, images: Tensor) -> Tensor:
        """Softmax of the intact network for every image ``[N, classes]``, on the network's
        device, computed in chunks that fit the budget."""
        device = module_device(net)
        total = images.shape[0]
        classes = _output_width(net.graph_module)
        per_image = (
            math.prod(net.example_shape) * FLOAT
            + activation_bytes_per_sample(net.graph_module)
            + 2 * classes * FLOAT
        )
        room = self.budget_bytes(net) - total * classes * FLOAT
        chunk = max(1, min(total, self.batch_size or room // per_image))
        parts = [
            torch.softmax(net(images[start : start + chunk].to(device)), dim=-1)
            for start in range(0, total, chunk)
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _score_unit(
        self,
        net: MaskedNetwork,
        index: int,
        images: Tensor,
        reference: Tensor,
        *,
        neurons: range | None = None,
    ) -> np.ndarray:
        """Mean JSD per neuron of unit ``index`` (``neurons`` only, if given), given the
        reference softmax of every image; image chunks outside, neuron blocks inside."""
        unit = net.units[index]
        device = module_device(net)
        prefix, suffix = net.split_after(unit.sync_node)
        plan = self.plan(net, index, images.shape[0])
        chosen = range(unit.num_neurons) if neurons is None else neurons
        sums = torch.zeros(unit.num_neurons, dtype=torch.float64, device=device)
        for part in plan.image_chunks():
            live = prefix(images[part].to(device))
            expected = reference[part].to(device)
            for start in range(0, len(chosen), plan.ablations):
                some = chosen[start : start + plan.ablations]
                block = torch.arange(some.start, some.stop, some.step, device=device)
                sums[block] += _block_divergence(net, index, suffix, live, expected, block)
            del live
        return (sums / images.shape[0]).cpu().numpy()[chosen.start : chosen.stop : chosen.step]

    def _ablations_per_forward(self, suffix: fx.GraphModule, batch: int) -> int:
        """Ablations one masked forward of ``batch`` images may hold, counting the suffix's
        activations only: a quick estimate for `benchmarks.bench_s3`; scoring uses `plan`."""
        budget = memory_budget_bytes(torch.device("cpu"), self.memory_budget_mb, DEFAULT_BUDGET_MB)
        return max(1, budget // activation_bytes_per_sample(suffix) // batch)


def _block_divergence(
    net: MaskedNetwork,
    index: int,
    suffix: fx.GraphModule,
    live: tuple[Tensor, ...],
    reference: Tensor,
    block: Tensor,
) -> Tensor:
    """Summed JSD over the chunk's images for each neuron of ``block`` zeroed alone."""
    groups, count = block.numel(), net.units[index].num_neurons
    mask = torch.ones(groups, count, dtype=reference.dtype, device=reference.device)
    mask[torch.arange(groups, device=block.device), block] = 0.0
    masks: list[Tensor | None] = [None] * len(net.units)
    masks[index] = mask
    expanded = [repeat_groups(t, groups) for t in live]
    with net.masked(masks):
        probs = torch.softmax(suffix(*expanded), dim=-1)
    divergence = jensen_shannon(reference.repeat(groups, 1), probs)
    return divergence.view(groups, -1).double().sum(dim=1)


def _fixed_batch(sizes: AblationPlan, batch_size: int) -> AblationPlan:
    chunk = min(sizes.images, batch_size)
    ablations = max(1, min(sizes.neurons, batch_size // chunk))
    return replace(sizes, image_chunk=chunk, ablations=ablations)


def _within_budget(sizes: AblationPlan, budget: int) -> AblationPlan:
    """The largest image chunk that fits with one ablation (chunks evened out), then as many
    ablations per forward as fit beside it."""
    room = budget - sizes.fixed_bytes
    one = sizes.held_bytes + max(sizes.prefix_bytes, sizes.ablation_bytes)
    chunk = max(1, min(sizes.images, (room - sizes.mask_bytes) // one))
    chunk = -(-sizes.images // -(-sizes.images // chunk))  # same count, evened out
    spare = room - chunk * sizes.held_bytes
    ablations = spare // (chunk * sizes.ablation_bytes + sizes.mask_bytes)
    return replace(sizes, image_chunk=chunk, ablations=max(1, min(sizes.neurons, ablations)))


def _live_bytes(prefix: fx.GraphModule) -> int:
    """Bytes per image of the values the prefix hands to the suffix (from shape metadata)."""
    output = next(n for n in prefix.graph.nodes if n.op == "output")
    return sum(_node_bytes(node) for node in output.args[0])


def _output_width(gm: fx.GraphModule) -> int:
    """Classes: elements per image of the network's output."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    return _node_bytes(output.args[0]) // FLOAT


def _node_bytes(node: fx.Node) -> int:
    shape = getattr(node.meta.get("tensor_meta"), "shape", None)
    return 0 if shape is None else FLOAT * math.prod(shape[1:])
