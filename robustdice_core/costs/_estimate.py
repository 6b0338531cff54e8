"""`estimate_costs`: per-device memory, FLOPs, traffic, energy and the system latency/FPS.

The formulas are documented in ``docs/cost_model.md``; in short, for device d and unit u with
n[u, d] neurons held (CDC's parity device: its parity rows):

- weights  = (sum_u n[u, d] * params_per_neuron[u] + mixing_params) * dtype bytes; CDC's
             parity device holds summed layer rows (linear_params_per_neuron[u] each) and
             the local-op parameters of every neuron (it decodes a lost slice)
- memory   = weights + peak live activations + the profile's runtime overhead
- FLOPs    = sum_u n[u, d] * (2 * MACs + local ops)[u] + all channel-mixing FLOPs
- bytes    : per sync point, each device sends a peer the outputs the peer does not hold
- compute  = per unit and device, the roofline time + the profile's per-unit overhead + its
             per-message overhead for each message the device sends or receives there (the
             tail: the image in and the logits out)
- latency  = sum_u (max_d compute[u, d] + gather[u]) + the work after the last sync point
- fps      : `Schedule.BARRIER` (default): 1 / latency, one image at a time, every gather a
             barrier. `Schedule.OVERLAPPED` (the runtime's pipelining, K = ``in_flight``
             images at once, one image's gather overlapping another's compute):
             min(K / latency, 1 / busy), busy = the busiest resource's seconds per image
             (a device's summed compute, or a link port's bytes); K = 1 is the barrier case
- energy   = P_idle * (1 / fps) + e_flop * FLOPs + e_tx * bytes_tx + e_rx * bytes_rx (the
             wall time one image occupies the device: its latency under the barrier schedule)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np

from robustdice_core._errors import InvalidParameterError
from robustdice_core._registry import parse_enum
from robustdice_core.costs._model_info import ModelCostInfo
from robustdice_core.costs._profiles import DeviceProfile, LinkProfile, Medium
from robustdice_core.partition import Partition

__all__ = [
    "CostEstimate",
    "DeviceCost",
    "Exchange",
    "Precision",
    "Provenance",
    "Schedule",
    "describe_schedule",
    "estimate_costs",
]

MB = 2**20  # the paper's and PyTorch's "MB"
DEFAULT_IN_FLIGHT = 4  # the runtime's default (`runtime.LaunchOptions.in_flight`)


class Precision(str, Enum):
    """Storage and arithmetic precision of weights and activations."""

    FP32 = "fp32"
    FP16 = "fp16"

    @property
    def bytes(self) -> int:
        return 4 if self is Precision.FP32 else 2


class Exchange(str, Enum):
    """What a device sends at a sync point."""

    MISSING = "missing"  # to each peer, only the outputs that peer does not compute itself
    ALL = "all"  # to each peer, every output it computed (replicas included)


class Provenance(str, Enum):
    """Where a figure comes from (DESIGN 3.7)."""

    ESTIMATED = "estimated"
    MEASURED = "measured"


class Schedule(str, Enum):
    """How the runtime orders images and gathers (which FPS the estimate reports)."""

    BARRIER = "barrier"  # one image at a time; each gather waits for every device
    OVERLAPPED = "overlapped"  # K images in flight: one image's gather overlaps another's work


@dataclass(frozen=True)
class DeviceCost:
    """One device's share of one image (bytes, FLOPs, seconds, joules)."""

    weight_bytes: float
    activation_bytes: float
    memory_bytes: float
    flops: float
    bytes_tx: float
    bytes_rx: float
    bytes_tx_per_sync: tuple[float, ...]
    bytes_rx_per_sync: tuple[float, ...]
    compute_s: float
    energy_j: float

    @property
    def partition_bytes(self) -> float:
        """Weights and activations: the memory this device's share of the partition needs."""
        return self.weight_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_tx_per_sync"] = list(self.bytes_tx_per_sync)
        data["bytes_rx_per_sync"] = list(self.bytes_rx_per_sync)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceCost:
        values = {f: data[f] for f in cls.__dataclass_fields__}
        values["bytes_tx_per_sync"] = tuple(data["bytes_tx_per_sync"])
        values["bytes_rx_per_sync"] = tuple(data["bytes_rx_per_sync"])
        return cls(**values)


@dataclass(frozen=True)
class CostEstimate:
    """The cost model's figures for one partition on one cluster."""

    per_device: tuple[DeviceCost, ...]
    latency_s: float
    fps: float
    pipelined_fps: float  # bound when the runtime overlaps consecutive images
    gather_s_per_sync: tuple[float, ...]
    fits_memory: bool  # every device's memory is within its profile's capacity
    dtype: Precision
    device_profiles: tuple[str, ...]
    link_profile: str
    exchange: Exchange
    provenance: Provenance = Provenance.ESTIMATED
    schedule: Schedule = Schedule.BARRIER  # which schedule `fps` (and the idle energy) assume
    in_flight: int = 1  # images in flight under `Schedule.OVERLAPPED`

    @property
    def max_memory_mb(self) -> float:
        """Largest per-device memory (weights + activations + runtime), in MB (2^20 bytes)."""
        return max(d.memory_bytes for d in self.per_device) / MB

    @property
    def max_partition_memory_mb(self) -> float:
        """Largest per-device memory of the partition itself (its weights and activations,
        without the profile's runtime constant), in MB: what a partition choice changes."""
        return max(d.partition_bytes for d in self.per_device) / MB

    @property
    def max_weight_mb(self) -> float:
        """Largest per-device weight memory, in MB (2^20 bytes)."""
        return max(d.weight_bytes for d in self.per_device) / MB

    @property
    def max_energy_j(self) -> float:
        """Largest per-device energy per image, in joules."""
        return max(d.energy_j for d in self.per_device)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_device": [d.to_dict() for d in self.per_device],
            "latency_s": self.latency_s,
            "fps": self.fps,
            "pipelined_fps": self.pipelined_fps,
            "gather_s_per_sync": list(self.gather_s_per_sync),
            "fits_memory": self.fits_memory,
            "max_memory_mb": self.max_memory_mb,
            "max_partition_memory_mb": self.max_partition_memory_mb,
            "max_weight_mb": self.max_weight_mb,
            "max_energy_j": self.max_energy_j,
            "dtype": self.dtype.value,
            "device_profiles": list(self.device_profiles),
            "link_profile": self.link_profile,
            "exchange": self.exchange.value,
            "provenance": self.provenance.value,
            "schedule": self.schedule.value,
            "in_flight": self.in_flight,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostEstimate:
        """Rebuild from `to_dict` output (the derived ``max_*`` entries are ignored)."""
        return cls(
            per_device=tuple(DeviceCost.from_dict(d) for d in data["per_device"]),
            latency_s=float(data["latency_s"]),
            fps=float(data["fps"]),
            pipelined_fps=float(data["pipelined_fps"]),
            gather_s_per_sync=tuple(float(g) for g in data["gather_s_per_sync"]),
            fits_memory=bool(data["fits_memory"]),
            dtype=_precision(str(data["dtype"])),
            device_profiles=tuple(str(p) for p in data["device_profiles"]),
            link_profile=str(data["link_profile"]),
            exchange=_exchange(str(data["exchange"])),
            provenance=Provenance(data.get("provenance", Provenance.ESTIMATED)),
            schedule=_schedule(str(data.get("schedule", Schedule.BARRIER.value))),
            in_flight=int(data.get("in_flight", 1)),
        )


def estimate_costs(
    partition: Partition,
    info: ModelCostInfo,
    device: DeviceProfile | Sequence[DeviceProfile],
    link: LinkProfile,
    *,
    dtype: str | Precision = Precision.FP32,
    exchange: str | Exchange = Exchange.MISSING,
    schedule: str | Schedule = Schedule.BARRIER,
    in_flight: int | None = None,
) -> CostEstimate:
    """Estimate memory, FLOPs, traffic, latency, FPS and energy of ``partition``.

    Args:
        partition: which neurons each device computes.
        info: the model's cost figures (`ModelCostInfo.from_traced`).
        device: one profile for every device, or one per device (heterogeneous cluster).
        link: the network between the devices.
        dtype: ``"fp32"`` or ``"fp16"`` for weights, activations and traffic.
        exchange: ``"missing"`` (default) or ``"all"``; see `Exchange`.
        schedule: ``"barrier"`` (default) or ``"overlapped"``; see `Schedule`.
        in_flight: images in flight under the overlapped schedule (default
            `DEFAULT_IN_FLIGHT`, the runtime's); must be 1 or left out for the barrier one.
    """
    precision, mode = _precision(dtype), _exchange(exchange)
    order, k = _schedule(schedule), _in_flight(schedule, in_flight)
    devices = _devices(device, partition.num_devices)
    _check_model(partition, info)
    loads = _loads(partition, info, devices, link, precision.bytes, mode)
    fps = _fps(loads, k)
    seconds = loads.latency_s if k == 1 else 1.0 / fps  # barrier: exactly as before
    records = _records(loads, info, devices, link, precision.bytes, seconds)
    return CostEstimate(
        per_device=records,
        latency_s=loads.latency_s,
        fps=fps,
        pipelined_fps=_rate(loads.busy_s),
        gather_s_per_sync=tuple(float(g) for g in loads.gather_s),
        fits_memory=all(
            r.memory_bytes <= p.memory_bytes.value for r, p in zip(records, devices, strict=True)
        ),
        dtype=precision,
        device_profiles=tuple(p.name for p in devices),
        link_profile=link.name,
        exchange=mode,
        schedule=order,
        in_flight=k,
    )


def describe_schedule(in_flight: int | None) -> str:
    """The schedule a figure assumes, in words: ``in_flight`` None or 1 is the barrier one."""
    if in_flight is None or in_flight == 1:
        return "barrier schedule"
    return f"overlapped schedule, {in_flight} in flight"


def _rate(seconds: float) -> float:
    return 1.0 / seconds if seconds > 0 else float("inf")


def _fps(loads: _Loads, in_flight: int) -> float:
    """K images in flight: at most K per latency (Little's law), and no faster than the
    busiest resource allows. K = 1 is the barrier schedule's 1 / latency."""
    if in_flight == 1:
        return _rate(loads.latency_s)
    return min(in_flight * _rate(loads.latency_s), _rate(loads.busy_s))


# ----------------------------------------------------------------------------- validation
def _precision(dtype: str | Precision) -> Precision:
    return parse_enum(Precision, dtype, "dtype")


def _exchange(exchange: str | Exchange) -> Exchange:
    return parse_enum(Exchange, exchange, "exchange")


def _schedule(schedule: str | Schedule) -> Schedule:
    return parse_enum(Schedule, schedule, "schedule")


def _in_flight(schedule: str | Schedule, in_flight: int | None) -> int:
    if _schedule(schedule) is Schedule.BARRIER:
        if in_flight not in (None, 1):
            raise InvalidParameterError(
                f"`in_flight` is {in_flight}, but the barrier schedule has one image in flight; "
                "pass `schedule='overlapped'` for more."
            )
        return 1
    k = DEFAULT_IN_FLIGHT if in_flight is None else in_flight
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidParameterError(f"`in_flight` must be an integer of at least 1, got {k!r}.")
    return k


def _devices(
    device: DeviceProfile | Sequence[DeviceProfile], num_devices: int
) -> tuple[DeviceProfile, ...]:
    if isinstance(device, DeviceProfile):
        return (device,) * num_devices
    devices = tuple(device)
    if len(devices) != num_devices:
        raise InvalidParameterError(
            f"`device` lists {len(devices)} profiles but the partition has {num_devices} "
            "devices; give one profile, or one per device."
        )
    return devices


def _check_model(partition: Partition, info: ModelCostInfo) -> None:
    if tuple(partition.unit_sizes) != tuple(int(n) for n in info.num_neurons):
        raise InvalidParameterError(
            f"the partition's {partition.num_units} unit sizes do not match the model's "
            f"{info.num_units} units (first: {list(partition.unit_sizes[:3])} vs "
            f"{info.num_neurons[:3].tolist()}); partition the model the info was built from."
        )


# ----------------------------------------------------------------------------- loads
@dataclass(frozen=True)
class _Loads:
    """Per unit and device: neurons, FLOPs, bytes sent, seconds; and the system times."""

    held: np.ndarray  # [U, ND] neurons (CDC parity: rows)
    flops: np.ndarray  # [U, ND] FLOPs of the device's neurons
    weights: np.ndarray  # [ND] parameters held
    sent: np.ndarray  # [U, ND, ND] bytes device d sends device e
    compute_s: np.ndarray  # [U + 1, ND] per unit (with the mixing ops before it), then tail
    gather_s: np.ndarray  # [U]
    latency_s: float
    busy_s: float  # the busiest resource's seconds per image (pipelined bound)


def _loads(
    partition: Partition,
    info: ModelCostInfo,
    devices: tuple[DeviceProfile, ...],
    link: LinkProfile,
    nbytes: int,
    mode: Exchange,
) -> _Loads:
    held = _held(partition)
    flops = _unit_flops(partition, info, held)
    sent = _traffic(partition, info, held, mode) * nbytes
    compute = _compute_s(info, held, flops, devices, nbytes)
    compute += _message_s(sent, devices, partition.parity_device)
    gather = _gather_s(sent, link)
    latency = float(compute[:-1].max(axis=1).sum() + gather.sum() + compute[-1].max())
    busy = max(float(compute.sum(axis=0).max()), _link_busy_s(sent, link))
    weights = _weights(partition, info, held)
    return _Loads(held, flops, weights, sent, compute, gather, latency, busy)


def _held(partition: Partition) -> np.ndarray:
    """``[U, ND]`` neurons (CDC parity: rows) each device computes."""
    counts = [
        partition.neurons_held(u, d)
        for u in range(partition.num_units)
        for d in range(partition.num_devices)
    ]
    return np.array(counts, dtype=np.float64).reshape(partition.num_units, partition.num_devices)


def _weights(partition: Partition, info: ModelCostInfo, held: np.ndarray) -> np.ndarray:
    """``[ND]`` parameters each device holds. The parity device computes only the sum of the
    slices' pre-activation outputs: per row, the layer's weights and bias; it holds the
    local-op parameters of every neuron (a few per neuron) to decode a lost slice."""
    weights = held.T @ info.params_per_neuron + info.mixing_params
    if partition.parity_device is not None:
        p = partition.parity_device
        local = info.params_per_neuron - info.linear_params_per_neuron
        sizes = np.asarray(partition.unit_sizes, dtype=np.float64)
        row = info.parity_row_params(partition.num_devices - 1)
        weights[p] = held[:, p] @ row + sizes @ local + info.mixing_params
    return weights


def _unit_flops(partition: Partition, info: ModelCostInfo, held: np.ndarray) -> np.ndarray:
    """``[U, ND]`` FLOPs of each device's neurons; the parity device skips the local ops."""
    per_neuron = 2.0 * info.macs_per_neuron + info.local_flops_per_neuron
    flops = held * per_neuron[:, None]
    if partition.parity_device is not None:
        p = partition.parity_device
        factor = info.parity_factor(partition.num_devices - 1)
        flops[:, p] = held[:, p] * 2.0 * info.macs_per_neuron * factor
    return flops


def _traffic(
    partition: Partition, info: ModelCostInfo, held: np.ndarray, mode: Exchange
) -> np.ndarray:
    """``[U, ND, ND]`` elements device d sends device e at each sync point."""
    nd = held.shape[1]
    neurons = np.repeat(held[:, :, None], nd, axis=2)  # everything d computes, to every e
    if mode is Exchange.MISSING:
        everywhere, partly = _replicated_units(partition, held)
        neurons[everywhere] = 0.0  # every device computes the whole unit: nothing to send
        if partly:
            neurons[partly] -= _overlaps(partition, partly)
    elements = neurons * info.sync_elements_per_neuron[:, None, None]
    if partition.parity_device is not None:
        p = partition.parity_device
        elements[:, p, :] = (held[:, p] * info.linear_elements_per_neuron)[:, None]
    elements[:, np.arange(nd), np.arange(nd)] = 0.0
    return elements


def _replicated_units(partition: Partition, held: np.ndarray) -> tuple[list[int], list[int]]:
    """Units every device computes whole, and the other units with replicas."""
    data = held.copy()
    if partition.parity_device is not None:
        data[:, partition.parity_device] = 0
    sizes = np.asarray(partition.unit_sizes)
    everywhere = (data == sizes[:, None]).all(axis=1)
    partly = (data.sum(axis=1) > sizes) & ~everywhere
    return np.flatnonzero(everywhere).tolist(), np.flatnonzero(partly).tolist()


def _overlaps(partition: Partition, units: list[int]) -> np.ndarray:
    """``[len(units), ND, ND]`` neurons of each unit that both device d and device e compute.

    All listed units' holdings go into one ``[ND, sum of sizes]`` 0/1 matrix, built from one
    pass over the index tuples; the per-unit products are summed over each unit's columns.
    """
    nd = partition.num_devices
    lists = [partition.assignments[u][d] for u in units for d in range(nd)]
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    index = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=counts.sum())
    sizes = np.array([partition.unit_sizes[u] for u in units], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    rows = np.repeat(np.tile(np.arange(nd), len(units)), counts)
    columns = index + np.repeat(np.repeat(starts, nd), counts)
    holdings = np.zeros((nd, int(sizes.sum())), dtype=np.float32)
    holdings[rows, columns] = 1.0
    pairs = holdings[:, None, :] * holdings[None, :, :]  # [ND, ND, columns]
    return np.add.reduceat(pairs, starts, axis=2).transpose(2, 0, 1).astype(np.float64)


def _compute_s(
    info: ModelCostInfo,
    held: np.ndarray,
    flops: np.ndarray,
    devices: tuple[DeviceProfile, ...],
    nbytes: int,
) -> np.ndarray:
    """``[U + 1, ND]`` seconds: unit u with the mixing ops before it; last row: the tail.

    Roofline per unit: the larger of FLOPs / sustained FLOP/s and bytes moved (weights,
    gathered input, own output, mixing-op reads and writes) / sustained memory bandwidth.
    """
    rate = np.array([d.flops_per_s(nbytes) for d in devices])
    bandwidth = np.array([d.bytes_per_s for d in devices])
    overhead = np.array([d.unit_overhead_s.value for d in devices])
    tail = np.zeros((1, held.shape[1]))
    work = np.vstack([flops, tail]) + info.mixing_flops[:, None]
    per_neuron = info.params_per_neuron + info.sync_elements_per_neuron
    moved = np.vstack([held * per_neuron[:, None] + info.input_elements[:, None], tail])
    moved = (moved + info.mixing_traffic_elements[:, None]) * nbytes
    seconds = np.maximum(work / rate, moved / bandwidth)
    seconds[:-1] += overhead
    return seconds


def _message_s(
    sent: np.ndarray, devices: tuple[DeviceProfile, ...], parity: int | None
) -> np.ndarray:
    """``[U + 1, ND]`` processor seconds the devices spend on messages: per sync point, one
    per peer sent to and one per peer received from; in the tail, the image received and
    the logits sent (the runtime's client messages). A CDC parity device sends nothing
    while every device is up (it decodes only for a lost slice), so its sends are not
    counted, although the traffic model charges its rows' bytes (docs/cost_model.md)."""
    overhead = np.array([d.message_overhead_s.value for d in devices])
    links = sent > 0
    if parity is not None:
        links[:, parity, :] = False
    per_unit = links.sum(axis=2) + links.sum(axis=1)  # [U, ND]
    messages = np.vstack([per_unit, np.full((1, sent.shape[1]), 2)])
    return messages * overhead


# ----------------------------------------------------------------------------- network
def _gather_s(sent: np.ndarray, link: LinkProfile) -> np.ndarray:
    """``[U]`` seconds for the all-gather at each sync point.

    Switched: ports are full duplex, so the busiest port's larger direction, plus one message
    latency. Shared medium: every message takes its turn on the air.
    """
    bandwidth, latency = link.bandwidth_bytes_per_s.value, link.latency_s.value
    messages = (sent > 0).sum(axis=(1, 2))
    if link.medium is Medium.SHARED:
        return messages * latency + sent.sum(axis=(1, 2)) / bandwidth
    port = np.maximum(sent.sum(axis=2), sent.sum(axis=1)).max(axis=1)
    return np.where(messages > 0, latency, 0.0) + port / bandwidth


def _link_busy_s(sent: np.ndarray, link: LinkProfile) -> float:
    """Seconds per image the network is busy (for the pipelined throughput bound)."""
    if link.medium is Medium.SHARED:
        return float(_gather_s(sent, link).sum())
    per_port = np.maximum(sent.sum(axis=(0, 2)), sent.sum(axis=(0, 1)))
    return float(per_port.max() / link.bandwidth_bytes_per_s.value)


# ----------------------------------------------------------------------------- records
def _records(
    loads: _Loads,
    info: ModelCostInfo,
    devices: tuple[DeviceProfile, ...],
    link: LinkProfile,
    nbytes: int,
    seconds_per_image: float,
) -> tuple[DeviceCost, ...]:
    """``seconds_per_image``: the wall time one image occupies a device (1 / fps), which is
    what its idle power is paid for."""
    activations = info.activation_elements(loads.held / info.num_neurons[:, None]) * nbytes
    flops = loads.flops.sum(axis=0) + info.mixing_flops.sum()
    tx, rx = loads.sent.sum(axis=2), loads.sent.sum(axis=1)  # [U, ND]
    records = []
    for d, profile in enumerate(devices):
        weight_bytes = float(loads.weights[d] * nbytes)
        energy = (
            profile.idle_power_w.value * seconds_per_image
            + profile.energy_per_flop_j(nbytes) * flops[d]
            + link.tx_energy_j_per_byte.value * tx[:, d].sum()
            + link.rx_energy_j_per_byte.value * rx[:, d].sum()
        )
        records.append(
            DeviceCost(
                weight_bytes=weight_bytes,
                activation_bytes=float(activations[d]),
                memory_bytes=weight_bytes
                + float(activations[d])
                + profile.runtime_overhead_bytes.value,
                flops=float(flops[d]),
                bytes_tx=float(tx[:, d].sum()),
                bytes_rx=float(rx[:, d].sum()),
                bytes_tx_per_sync=tuple(tx[:, d].tolist()),
                bytes_rx_per_sync=tuple(rx[:, d].tolist()),
                compute_s=float(loads.compute_s[:, d].sum()),
                energy_j=float(energy),
            )
        )
    return tuple(records)
