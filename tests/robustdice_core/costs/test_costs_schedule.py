"""The overlapped schedule: K images in flight, one image's gathers under another's compute."""

from __future__ import annotations

import pytest

from robustdice_core import RobustDiceError
from robustdice_core.costs import CostEstimate, ModelCostInfo, Schedule, estimate_costs
from robustdice_core.partition import LOP, FullReplication, Partition

from .cost_cases import make_device, make_link

SIZES = [4, 2]


@pytest.fixture()
def lop() -> Partition:
    return LOP().partition(SIZES, 2)


def test_barrier_is_the_default_and_unchanged(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link())
    assert (costs.schedule, costs.in_flight) == (Schedule.BARRIER, 1)
    assert costs.fps == pytest.approx(1 / 1.116)  # compute 0.736 + gathers 0.38
    assert costs.max_energy_j == pytest.approx(4.048)  # idle power over the latency


def test_overlapped_is_bound_by_the_busiest_device(
    tiny_info: ModelCostInfo, lop: Partition
) -> None:
    costs = estimate_costs(lop, tiny_info, make_device(), make_link(), schedule="overlapped")
    assert costs.in_flight == 4
    # min(4 / 1.116 s, 1 / 0.736 s): the device's compute, the gathers hidden under it
    assert costs.fps == pytest.approx(1 / 0.736)
    assert costs.latency_s == pytest.approx(1.116)  # one image still takes as long
    # idle power is paid for the 0.736 s each image occupies the device, not its latency
    assert costs.per_device[0].energy_j == pytest.approx(2 * 0.736 + 0.736 + 0.36 + 0.72)


def test_few_images_in_flight_bound_by_latency(tiny_info: ModelCostInfo, lop: Partition) -> None:
    slow = make_link(latency_s=1.0)  # gathers 1.32 + 1.04 s: latency 3.096 s
    two = estimate_costs(lop, tiny_info, make_device(), slow, schedule="overlapped", in_flight=2)
    assert two.fps == pytest.approx(2 / 3.096)  # Little's law: 2 images per latency
    many = estimate_costs(lop, tiny_info, make_device(), slow, schedule="overlapped", in_flight=8)
    assert many.fps == pytest.approx(1 / 0.736) == pytest.approx(many.pipelined_fps)


def test_one_in_flight_is_the_barrier_schedule(tiny_info: ModelCostInfo, lop: Partition) -> None:
    one = estimate_costs(
        lop, tiny_info, make_device(), make_link(), schedule=Schedule.OVERLAPPED, in_flight=1
    )
    barrier = estimate_costs(lop, tiny_info, make_device(), make_link())
    assert one.fps == barrier.fps
    assert one.max_energy_j == pytest.approx(barrier.max_energy_j)


def test_nothing_to_overlap_without_gathers(tiny_info: ModelCostInfo) -> None:
    """Full replication exchanges nothing; a node computes one image at a time."""
    full = FullReplication().partition(SIZES, 2)
    overlapped = estimate_costs(full, tiny_info, make_device(), make_link(), schedule="overlapped")
    barrier = estimate_costs(full, tiny_info, make_device(), make_link())
    assert overlapped.fps == pytest.approx(barrier.fps)


def test_schedule_round_trips(tiny_info: ModelCostInfo, lop: Partition) -> None:
    costs = estimate_costs(
        lop, tiny_info, make_device(), make_link(), schedule="overlapped", in_flight=3
    )
    data = costs.to_dict()
    assert (data["schedule"], data["in_flight"]) == ("overlapped", 3)
    assert CostEstimate.from_dict(data) == costs
    del data["schedule"], data["in_flight"]  # a record written before the schedule existed
    old = CostEstimate.from_dict(data)
    assert (old.schedule, old.in_flight) == (Schedule.BARRIER, 1)


@pytest.mark.parametrize(
    ("schedule", "in_flight"),
    [("barrier", 4), ("overlapped", 0), ("overlapped", 2.5), ("x", None)],
)
def test_bad_schedules_are_refused(
    tiny_info: ModelCostInfo, lop: Partition, schedule: str, in_flight: int | None
) -> None:
    with pytest.raises(RobustDiceError, match="schedule|in_flight"):
        estimate_costs(
            lop, tiny_info, make_device(), make_link(), schedule=schedule, in_flight=in_flight
        )
