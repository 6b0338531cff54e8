"""Every formula of `estimate_costs`, checked against hand-computed values.

The model is ``cost_cases.two_unit_model`` (unit 0: 4 conv neurons, 14 params, 144 MACs,
64 local FLOPs, 4 sync / 16 pre-activation elements each; unit 1: 2 linear neurons, 17 params,
16 MACs, 1 element each). The device computes 1000 FLOP/s with unlimited memory bandwidth;
the link moves 100 B/s with 10 ms per message.
"""

from __future__ import annotations

import json

import pytest

from robustdice_core._errors import InvalidParameterError
from robustdice_core.costs import (
    CostEstimate,
    Medium,
    ModelCostInfo,
    Provenance,
    estimate_costs,
)
from robustdice_core.partition import CDC, LOP, FullReplication, Partition

from .cost_cases import make_device, make_link

SIZES = [4, 2]


@pytest.fixture()
def lop() -> Partition:
    # unit 0: device 0 {0, 1}, device 1 {2, 3}; unit 1: {0} and {1}
    return LOP().partition(SIZES, 2)


@pytest.fixture()
def replicated() -> Partition:
    # unit 0: device 0 {0, 1, 2}, device 1 {2, 3}; unit 1: device 0 {0}, device 1 {0, 1}
    return Partition(
        method="hand",
        num_devices=2,
        unit_sizes=(4, 2),
        assignments=(((0, 1, 2), (2, 3)), ((0,), (0, 1))),
    )


def test_weight_memory_counts_held_neurons_with_bn(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    # 2 conv neurons * 14 + 1 linear neuron * 17 = 45 params * 4 bytes
    assert [d.weight_bytes for d in costs.per_device] == [180.0, 180.0]
    assert costs.max_weight_mb == pytest.approx(180 / 2**20)


def test_fp16_halves_weight_and_traffic_bytes(tiny_info: ModelCostInfo, lop: Partition) -> None:
    fp32 = estimate_costs(lop, tiny_info, make_device(), make_link())
    fp16 = estimate_costs(lop, tiny_info, make_device(), make_link(), dtype="fp16")
    for a, b in zip(fp32.per_device, fp16.per_device, strict=True):
        assert b.weight_bytes == a.weight_bytes / 2
        assert b.activation_bytes == a.activation_bytes / 2
        assert b.bytes_tx == a.bytes_tx / 2
    assert fp16.dtype == "fp16"


def test_replicas_add_weight_memory(tiny_info: ModelCostInfo, replicated: Partition) -> None:
    costs = estimate_costs(replicated, tiny_info, make_device(), make_link())
    # device 0: 3 * 14 + 17 = 59 params; device 1: 2 * 14 + 2 * 17 = 62 params
    assert [d.weight_bytes for d in costs.per_device] == [236.0, 248.0]


def test_activation_working_set(tiny_info: ModelCostInfo, lop: Partition) -> None:
    # live elements per step, f = share of unit 0: x 16 | conv 16 + 64f | bn 128f | relu 128f
    # | pool (sync, gathered) 64f + 16 | linear 16 + 2. LOP: f = 1/2 -> 64; replication: 128.
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    assert [d.activation_bytes for d in costs.per_device] == [256.0, 256.0]
    full = estimate_costs(
        FullReplication().partition(SIZES, 2), tiny_info, make_device(), make_link()
    )
    assert full.per_device[0].activation_bytes == 512.0


def test_memory_is_weights_plus_activations_plus_runtime(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    assert costs.per_device[0].memory_bytes == 180 + 256 + 1000
    assert costs.max_memory_mb == pytest.approx(1436 / 2**20)
    assert costs.fits_memory
    small = make_device(memory_bytes=1000.0)
    assert not estimate_costs(lop, tiny_info, small, make_link()).fits_memory


def test_flops_are_macs_times_two_plus_local_ops(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    # 2 * (2 * 144 + 64) + 1 * 2 * 16 = 704 + 32
    assert [d.flops for d in costs.per_device] == [736.0, 736.0]


def test_bytes_per_sync_point(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    # unit 0: 2 neurons * 4 elements * 4 bytes to the one peer; unit 1: 1 * 1 * 4
    for device in costs.per_device:
        assert device.bytes_tx_per_sync == (32.0, 4.0)
        assert device.bytes_rx_per_sync == (32.0, 4.0)
        assert (device.bytes_tx, device.bytes_rx) == (36.0, 36.0)


def test_switched_latency_fps_and_energy(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    # gather: 10 ms + 32 B / 100 B/s, and 10 ms + 4 / 100; compute: 704 / 1000, 32 / 1000
    assert costs.gather_s_per_sync == pytest.approx((0.33, 0.05))
    assert costs.latency_s == pytest.approx(0.704 + 0.33 + 0.032 + 0.05)
    assert costs.fps == pytest.approx(1 / 1.116)
    assert costs.per_device[0].compute_s == pytest.approx(0.736)
    # 2 W * 1.116 s + 1 mJ * 736 FLOPs + 10 mJ * 36 B sent + 20 mJ * 36 B received
    assert costs.per_device[0].energy_j == pytest.approx(2.232 + 0.736 + 0.36 + 0.72)
    assert costs.max_energy_j == pytest.approx(4.048)


def test_shared_medium_serialises_every_message(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link(Medium.SHARED))
    # unit 0: 2 messages * 10 ms + 64 B / 100 B/s; unit 1: 2 * 10 ms + 8 / 100
    assert costs.gather_s_per_sync == pytest.approx((0.66, 0.10))
    assert costs.latency_s == pytest.approx(0.704 + 0.66 + 0.032 + 0.10)


def test_memory_bound_units_use_bandwidth(tiny_info: ModelCostInfo, lop: Partition) -> None:
    slow = make_device(memory_bandwidth_bytes_per_s=100.0)
    costs = estimate_costs(lop, tiny_info, slow, make_link())
    # unit 0 moves (2 * (14 + 4) + 16 input) * 4 = 208 B; unit 1 (17 + 1 + 16) * 4 = 136 B
    assert costs.per_device[0].compute_s == pytest.approx(2.08 + 1.36)


def test_unit_overhead_and_efficiency(tiny_info: ModelCostInfo, lop: Partition) -> None:
    device = make_device(unit_overhead_s=0.1, compute_efficiency_fp32=0.5)
    costs = estimate_costs(lop, tiny_info, device, make_link())
    assert costs.per_device[0].compute_s == pytest.approx(2 * 0.736 + 0.2)


def test_message_overhead_is_processor_time_per_message(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    device = make_device(message_overhead_s=0.01)
    costs = estimate_costs(lop, tiny_info, device, make_link())
    # per sync point one message out and one in (2 devices), and the image in and logits out
    assert costs.per_device[0].compute_s == pytest.approx(0.736 + (2 + 2 + 2) * 0.01)
    assert costs.latency_s == pytest.approx(1.116 + 0.06)
    full = FullReplication().partition(SIZES, 2)
    alone = estimate_costs(full, tiny_info, device, make_link())  # client messages only
    assert alone.per_device[0].compute_s == pytest.approx((4 * 352 + 2 * 32) / 1000 + 0.02)
    # busy processors bound the overlapped schedule: nothing overlaps a message's CPU time
    overlapped = estimate_costs(
        lop, tiny_info, device, make_link(bandwidth_bytes_per_s=1e6), schedule="overlapped"
    )
    assert overlapped.fps == pytest.approx(1 / (0.736 + 0.06))


def test_pipelined_bound_is_the_busiest_resource(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    # the link is busier (36 B at 100 B/s per port) than a device (0.736 s)
    assert costs.pipelined_fps == pytest.approx(1 / 0.736)
    fast = make_link(bandwidth_bytes_per_s=1000.0)
    assert estimate_costs(lop, tiny_info, make_device(), fast).pipelined_fps == pytest.approx(
        1 / 0.736
    )
    slow = make_link(bandwidth_bytes_per_s=10.0)
    assert estimate_costs(lop, tiny_info, make_device(), slow).pipelined_fps == pytest.approx(
        1 / 3.6
    )


def test_full_replication_exchanges_nothing(tiny_info: ModelCostInfo) -> None:
    full = FullReplication().partition(SIZES, 2)
    costs = estimate_costs(full, tiny_info, make_device(), make_link())
    assert costs.gather_s_per_sync == (0.0, 0.0)
    assert all(d.bytes_tx == 0 for d in costs.per_device)
    assert costs.latency_s == pytest.approx((4 * 352 + 2 * 32) / 1000)
    everything = estimate_costs(full, tiny_info, make_device(), make_link(), exchange="all")
    assert everything.per_device[0].bytes_tx_per_sync == (64.0, 8.0)


def test_replicas_are_not_sent_to_peers_holding_them(
    tiny_info: ModelCostInfo, replicated: Partition
) -> None:
    costs = estimate_costs(replicated, tiny_info, make_device(), make_link())
    # unit 0: 0 -> 1 sends {0, 1} (32 B), 1 -> 0 sends {3} (16 B); unit 1: only 1 -> 0 sends {1}
    assert [d.bytes_tx_per_sync for d in costs.per_device] == [(32.0, 0.0), (16.0, 4.0)]
    assert [d.bytes_rx_per_sync for d in costs.per_device] == [(16.0, 4.0), (32.0, 0.0)]
    assert costs.gather_s_per_sync == pytest.approx((0.33, 0.05))
    shared = estimate_costs(replicated, tiny_info, make_device(), make_link(Medium.SHARED))
    assert shared.gather_s_per_sync == pytest.approx((0.02 + 0.48, 0.01 + 0.04))


def test_exchange_all_sends_every_computed_output(
    tiny_info: ModelCostInfo, replicated: Partition
) -> None:
    costs = estimate_costs(replicated, tiny_info, make_device(), make_link(), exchange="all")
    assert [d.bytes_tx_per_sync for d in costs.per_device] == [(48.0, 4.0), (32.0, 8.0)]
    assert costs.exchange == "all"


def test_cdc_parity_device(tiny_info: ModelCostInfo) -> None:
    cdc = CDC().partition(SIZES, 3)  # data devices 0 and 1 as LOP on 2, parity device 2
    costs = estimate_costs(cdc, tiny_info, make_device(), make_link())
    data, parity = costs.per_device[0], costs.per_device[2]
    assert data.weight_bytes == 180.0
    # summed layer rows (2 conv rows of 9 + 1, 1 linear row of 16 + 1) and the BN parameters
    # of all 4 conv neurons (the parity device decodes a lost slice, BN included)
    assert parity.weight_bytes == (2 * 10 + 1 * 17 + 4 * 4) * 4
    assert parity.flops == 2 * 2 * 144 + 2 * 16  # summed pre-activation: no local ops
    # parity sends its 2 rows of 16 pre-activation elements (4 B) to each of 2 peers
    assert parity.bytes_tx_per_sync == (256.0, 8.0)
    assert parity.bytes_rx_per_sync == (64.0, 8.0)
    assert data.bytes_tx_per_sync == (64.0, 8.0)
    assert data.bytes_rx_per_sync == (32.0 + 128.0, 4.0 + 4.0)
    # per-message processor time: the parity sends nothing while every device is up (the
    # runtime's CDC), so per unit a data device sends 2 and receives 1, the parity receives 2
    priced = estimate_costs(cdc, tiny_info, make_device(message_overhead_s=0.01), make_link())
    extra = [p.compute_s - c.compute_s for p, c in zip(priced.per_device, costs.per_device)]
    assert extra == pytest.approx([(2 * 3 + 2) * 0.01, (2 * 3 + 2) * 0.01, (2 * 2 + 2) * 0.01])


def test_heterogeneous_devices_slowest_sets_the_pace(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    devices = [make_device(), make_device(peak_flops_fp32=500.0)]
    costs = estimate_costs(lop, tiny_info, devices, make_link())
    assert costs.latency_s == pytest.approx(1.408 + 0.33 + 0.064 + 0.05)
    assert costs.device_profiles == ("test_device", "test_device")


def test_record_carries_provenance_and_serialises(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    assert isinstance(costs, CostEstimate)
    assert costs.provenance == Provenance.ESTIMATED == "estimated"
    data = json.loads(json.dumps(costs.to_dict()))
    assert data["provenance"] == "estimated"
    assert data["per_device"][0]["bytes_tx_per_sync"] == [32.0, 4.0]
    assert data["max_energy_j"] == pytest.approx(costs.max_energy_j)
    assert CostEstimate.from_dict(data) == costs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dtype": "int8"}, "`dtype`"), ({"exchange": "some"}, "`exchange`")],
)
def test_bad_options_are_rejected(
    tiny_info: ModelCostInfo, lop: Partition, kwargs: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        estimate_costs(lop, tiny_info, make_device(), make_link(), **kwargs)


def test_mismatched_partition_or_device_count(tiny_info: ModelCostInfo, lop: Partition) -> None:
    other = LOP().partition([5, 2], 2)
    with pytest.raises(InvalidParameterError, match="unit sizes"):
        estimate_costs(other, tiny_info, make_device(), make_link())
    with pytest.raises(InvalidParameterError, match="`device` lists 3 profiles"):
        estimate_costs(lop, tiny_info, [make_device()] * 3, make_link())
