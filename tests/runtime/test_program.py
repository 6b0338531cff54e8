"""Node programs: the per-node graphs, gathered in this process, equal the whole model; the
parity device decodes a lost CDC slice exactly as the simulation recovers it."""

from __future__ import annotations

import pytest
import torch

from runtime._program import NodeProgram, UnitStep
from runtime._simulate import simulated_logits
from runtime._sync import SyncPlan, assemble, rebuild_lost_slice

from .cases import digits_images, masked_net, model, partition_of, programs, unit_sizes

MODELS = ["digits-alexnet", "digits-vgg-bn", "digits-convnext"]


def _gather_run(progs: list[NodeProgram], images: torch.Tensor, down: set[int]) -> torch.Tensor:
    """Every live node's generator, its sync outputs gathered here (CDC: decoded on the
    parity device), as the engine does over the network."""
    partition = progs[0].partition
    plan = SyncPlan(partition)
    alive = [p for p in progs if p.rank not in down]
    runs = {p.rank: p.run(images) for p in alive}
    steps: dict[int, UnitStep] = {r: next(g) for r, g in runs.items()}
    lost = plan.lost_data_device(frozenset(down))
    while True:
        u = next(iter(steps.values())).unit
        unit = progs[0].units[u]
        parts = {
            r: (torch.tensor(progs[r].rows(u), dtype=torch.long), s.partial)
            for r, s in steps.items()
            if s.partial is not None and progs[r].rows(u)
        }
        if lost is not None and partition.assignments[u][lost]:
            parity = progs[plan.parity]  # type: ignore[index]
            dim = parity.layer_channel_dim[u]
            survivors = [
                steps[d].preact for d in plan.data_devices
                if d != lost and steps[d].preact is not None
            ]  # fmt: skip
            rows = len(partition.assignments[u][lost])
            pre = rebuild_lost_slice(steps[plan.parity].preact, survivors, rows, dim)  # type: ignore[arg-type, index]
            parts[-1] = (
                torch.tensor(partition.assignments[u][lost], dtype=torch.long),
                parity.decode(u, lost, pre),
            )
        full = assemble(unit, images.shape[0], torch.float32, None, parts)
        outs = {}
        for r, g in runs.items():
            try:
                steps[r] = g.send(full)
            except StopIteration as stop:
                outs[r] = stop.value
        if outs:
            assert len(outs) == len(runs)
            return next(iter(outs.values()))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["lop", "replication", "robustdice", "cdc"])
def test_node_programs_together_equal_the_whole_model(name: str, method: str) -> None:
    images, _ = digits_images(name, 16)
    progs = programs(name, partition_of(method, unit_sizes(name)))
    with torch.inference_mode():
        reference = model(name).module.eval()(images)
        logits = _gather_run(progs, images, set())
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("down", [{2}, {0, 1}])
def test_cdc_decoding_on_the_parity_device_equals_the_simulation(
    name: str, down: set[int]
) -> None:
    images, _ = digits_images(name, 16)
    partition = partition_of("cdc", unit_sizes(name))
    with torch.inference_mode():
        logits = _gather_run(programs(name, partition), images, down)
        expected = simulated_logits(masked_net(name), partition, down, images)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["lop", "robustdice"])
def test_a_failed_device_is_zero_as_in_the_simulation(method: str) -> None:
    name = "digits-convnext"
    images, _ = digits_images(name, 16)
    partition = partition_of(method, unit_sizes(name))
    with torch.inference_mode():
        logits = _gather_run(programs(name, partition), images, {1})
        expected = simulated_logits(masked_net(name), partition, {1}, images)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_cdc_parity_of_a_depthwise_convolution_keeps_the_slices_side_by_side() -> None:
    partition = partition_of("cdc", unit_sizes("digits-convnext"))
    parity = programs("digits-convnext", partition)[3]
    conv = parity._gm.get_submodule("features.1.0.block.0")
    assert tuple(conv.weight.shape[:2]) == (partition.parity_rows(1), 3)


def test_a_device_without_rows_yields_an_empty_share() -> None:
    sizes = unit_sizes("digits-alexnet")
    partition = partition_of("lop", sizes, nd=4)
    progs = programs("digits-alexnet", partition)
    images, _ = digits_images("digits-alexnet", 2)
    step = next(progs[3].run(images))
    assert step.partial is not None and step.partial.shape[0] == 2
    assert step.partial.shape[1] == len(partition.assignments[0][3])
