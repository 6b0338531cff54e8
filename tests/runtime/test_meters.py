"""Meters on fake sysfs trees and a fake clock: readings, rail selection, integration, fallback."""

from __future__ import annotations

import json
import math
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from robustdice_core._errors import InvalidParameterError, UnknownNameError
from runtime.meters import (
    ENERGY_SOURCES,
    SOURCE_ORDER,
    EnergyMeter,
    MemoryMeter,
    MeterReport,
    NodeMeters,
    PowerSource,
    ProbeContext,
    Provenance,
    SourceUnavailable,
    find_rails,
    select_rails,
)

IIO = "sys/bus/i2c/drivers/ina3221x"
HWMON = "sys/bus/i2c/drivers/ina3221"
POWERCAP = "sys/class/powercap"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def no_real_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with pynvml installed must not leak its GPUs into these tests."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


# ----------------------------------------------------------------------------- fake trees
def jetpack4(root: Path, chips: dict[str, dict[str, float]]) -> dict[str, Path]:
    """``ina3221x`` IIO layout; ``chips[bus-addr][rail] = mW``. Returns each rail's power file."""
    files = {}
    for k, (chip, rails) in enumerate(chips.items()):
        device = root / IIO / chip / f"iio:device{k}"
        for n, (name, mw) in enumerate(rails.items()):
            write(device / f"rail_name_{n}", name)
            write(device / f"in_power{n}_input", int(mw))
            write(device / f"in_voltage{n}_input", 5000)
            files[name] = device / f"in_power{n}_input"
    return files


def jetpack5(root: Path, chips: dict[str, dict[str, tuple[int, int]]]) -> dict[str, Path]:
    """hwmon layout; ``chips[bus-addr][label] = (mV, mA)``, plus the in7 "sum" channel."""
    files = {}
    for k, (chip, rails) in enumerate(chips.items()):
        hwmon = root / HWMON / chip / "hwmon" / f"hwmon{k + 3}"
        for n, (label, (mv, ma)) in enumerate(rails.items(), start=1):
            write(hwmon / f"in{n}_label", label)
            write(hwmon / f"in{n}_input", mv)
            write(hwmon / f"curr{n}_input", ma)
            write(hwmon / f"in{n + 3}_input", 40)  # shunt voltage (uV): not a rail
            files[label] = hwmon / f"curr{n}_input"
        write(hwmon / "in7_label", "sum of shunt voltages")
        write(hwmon / "in7_input", 120)
    return files


def rapl(root: Path, zones: dict[str, tuple[str, int, int]]) -> dict[str, Path]:
    """powercap tree; ``zones[folder] = (name, energy_uj, max_energy_range_uj)``."""
    files = {}
    for folder, (name, energy, wrap) in zones.items():
        write(root / POWERCAP / folder / "name", name)
        write(root / POWERCAP / folder / "energy_uj", energy)
        write(root / POWERCAP / folder / "max_energy_range_uj", wrap)
        files[folder] = root / POWERCAP / folder / "energy_uj"
    return files


NANO = {"6-0040": {"POM_5V_IN": 5000.0, "POM_5V_GPU": 1000.0, "POM_5V_CPU": 1500.0}}
XAVIER_JP4 = {  # Xavier AGX on JetPack 4: no total-input rail
    "1-0040": {"GPU": 3000.0, "CPU": 2000.0, "SOC": 1000.0},
    "1-0041": {"CV": 500.0, "VDDRQ": 700.0, "SYS5V": 1500.0},
}
ORIN_JP5 = {
    "1-0040": {"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 400), "VDD_SOC": (5000, 300)},
    "1-0041": {"NC": (0, 0), "VDD_SYS_5V0": (5000, 100)},
}
SERVER = {  # two sockets; core and psys must not be counted, mmio is the same package again
    "intel-rapl:0": ("package-0", 10_000_000, 262_143_328_850),
    "intel-rapl:0:0": ("core", 5_000_000, 262_143_328_850),
    "intel-rapl:0:2": ("dram", 1_000_000, 65_712_999_613),
    "intel-rapl:1": ("package-1", 20_000_000, 262_143_328_850),
    "intel-rapl:1:2": ("dram", 2_000_000, 65_712_999_613),
    "intel-rapl:2": ("psys", 9_000_000, 262_143_328_850),
}


def meter(root: Path, clock: FakeClock, **options: Any) -> EnergyMeter:
    return EnergyMeter.best_available(root, interval_s=None, clock=clock, **options)


# ----------------------------------------------------------------------------- INA3221
def test_jetpack4_total_rail_is_integrated_with_the_trapezoid_rule(
    tmp_path: Path, clock: FakeClock
) -> None:
    files = jetpack4(tmp_path, NANO)
    m = meter(tmp_path, clock)
    assert m.source is Provenance.INA3221
    m.start()  # 5 W at t = 0
    write(files["POM_5V_IN"], 7000)
    clock.now += 1.0
    m.sample()  # 7 W at t = 1
    write(files["POM_5V_IN"], 3000)
    clock.now += 2.0
    reading = m.stop(images=40)  # 3 W at t = 3
    expected = (5 + 7) / 2 * 1.0 + (7 + 3) / 2 * 2.0
    assert reading.source is Provenance.INA3221
    assert reading.joules == pytest.approx(expected)
    assert reading.rails == {"POM_5V_IN": pytest.approx(expected)}
    assert reading.seconds == pytest.approx(3.0)
    assert reading.joules_per_image == pytest.approx(expected / 40)
    assert reading.watts == pytest.approx(expected / 3.0)
    assert any("POM_5V_IN (total input of the module)" in n for n in reading.notes)


def test_jetpack4_without_a_total_rail_sums_the_compute_rails(
    tmp_path: Path, clock: FakeClock
) -> None:
    jetpack4(tmp_path, XAVIER_JP4)
    m = meter(tmp_path, clock)
    m.start()
    clock.now += 2.0
    reading = m.stop()
    assert set(reading.rails) == {"GPU", "CPU", "SOC", "CV"}  # not VDDRQ, SYS5V
    assert reading.joules == pytest.approx((3.0 + 2.0 + 1.0 + 0.5) * 2.0)
    assert any("sum of the compute rails" in n for n in reading.notes)


def test_jetpack5_hwmon_rails_skip_nc_and_the_shunt_sum_channel(tmp_path: Path) -> None:
    jetpack5(tmp_path, ORIN_JP5)
    rails, notes = find_rails(tmp_path)
    assert [r.name for r in rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC", "VDD_SYS_5V0"]
    assert notes == []
    assert rails[0].watts() == pytest.approx(5.0 * 1.2)  # mV x mA


def test_jetpack5_total_rail_reading(tmp_path: Path, clock: FakeClock) -> None:
    files = jetpack5(tmp_path, ORIN_JP5)
    m = meter(tmp_path, clock)
    m.start()  # 6 W
    write(files["VDD_IN"], 2000)
    clock.now += 0.5
    reading = m.stop()  # 10 W
    assert reading.rails == {"VDD_IN": pytest.approx((6.0 + 10.0) / 2 * 0.5)}
    assert reading.source is Provenance.INA3221


def test_rails_named_by_the_caller(tmp_path: Path, clock: FakeClock) -> None:
    jetpack5(tmp_path, ORIN_JP5)
    m = meter(tmp_path, clock, rails=["VDD_CPU_GPU_CV", "VDD_SOC"])
    m.start()
    clock.now += 1.0
    reading = m.stop()
    assert reading.rails == {
        "VDD_CPU_GPU_CV": pytest.approx(2.0),
        "VDD_SOC": pytest.approx(1.5),
    }


@pytest.mark.parametrize(
    ("names", "requested", "chosen"),
    [
        (["VDD_CPU_GPU_CV", "VDD_SOC", "VDD_IN"], None, ("VDD_IN",)),
        (["POM_5V_GPU", "POM_5V_IN", "POM_5V_CPU"], None, ("POM_5V_IN",)),
        (["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN"], None, ("VDD_IN",)),
        (["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"], None, ("GPU", "CPU", "SOC", "CV")),
        (["VDD_CPU_GPU_CV", "VDD_SOC", "VDD_DDR"], None, ("VDD_CPU_GPU_CV", "VDD_SOC")),
        (["VDD_IN", "VDD_SOC"], ["VDD_SOC"], ("VDD_SOC",)),
    ],
)
def test_rail_selection(
    names: list[str], requested: list[str] | None, chosen: tuple[str, ...]
) -> None:
    assert select_rails(names, requested) == chosen


@pytest.mark.parametrize(
    ("names", "requested", "message"),
    [
        (["VDDRQ", "SYS5V"], None, "no total-input rail"),
        ([], None, "among: none"),
        (["VDD_IN"], ["VDD_GPU"], "VDD_GPU not found; found: VDD_IN"),
    ],
)
def test_rail_selection_refuses_rails_of_unknown_meaning(
    names: list[str], requested: list[str] | None, message: str
) -> None:
    with pytest.raises(SourceUnavailable, match=message):
        select_rails(names, requested)


def test_a_rail_failing_mid_run_is_bridged_by_the_next_sample(
    tmp_path: Path, clock: FakeClock
) -> None:
    files = jetpack4(tmp_path, NANO)
    m = meter(tmp_path, clock)
    m.start()  # 5 W at t = 0
    files["POM_5V_IN"].unlink()
    clock.now += 1.0
    m.sample()  # fails: skipped
    write(files["POM_5V_IN"], 5000)
    clock.now += 1.0
    reading = m.stop()  # 5 W at t = 2, bridged from t = 0
    assert reading.source is Provenance.INA3221
    assert reading.joules == pytest.approx(10.0)
    assert any("1 sample(s) failed" in n and "in_power0_input" in n for n in reading.notes)


def test_a_rail_vanishing_for_good_falls_back_to_the_next_source(
    tmp_path: Path, clock: FakeClock
) -> None:
    files = jetpack4(tmp_path, NANO)
    energy = rapl(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**12)})
    m = meter(tmp_path, clock)
    m.start()
    files["POM_5V_IN"].unlink()
    write(energy["intel-rapl:0"], 4_000_000)
    clock.now += 1.0
    reading = m.stop()
    assert reading.source is Provenance.RAPL
    assert reading.joules == pytest.approx(4.0)
    assert any(n.startswith("ina3221: the final reading failed") for n in reading.notes)


@pytest.mark.parametrize(
    ("spoil", "note"),
    [
        (lambda f: f.write_text("garbage\n"), "holds 'garbage', not a number"),
        (lambda f: f.write_text(""), "holds '', not a number"),
        (lambda f: (f.unlink(), f.mkdir()), "IsADirectoryError"),
    ],
)
def test_an_unreadable_rail_at_start_falls_back_with_a_note(
    tmp_path: Path, clock: FakeClock, spoil: Callable[[Path], object], note: str
) -> None:
    files = jetpack4(tmp_path, NANO)
    spoil(files["POM_5V_IN"])
    m = meter(tmp_path, clock, estimate_j_per_image=0.25)
    m.start()
    clock.now += 1.0
    reading = m.stop(images=8)
    assert reading.source is Provenance.COST_MODEL
    assert reading.joules == pytest.approx(2.0)
    assert any(n.startswith("ina3221:") and note in n for n in reading.notes)


def test_an_unreadable_rail_label_hides_its_layout_with_a_note(
    tmp_path: Path, clock: FakeClock
) -> None:
    jetpack4(tmp_path, NANO)
    label = tmp_path / IIO / "6-0040/iio:device0/rail_name_0"
    label.unlink()
    label.mkdir()
    m = meter(tmp_path, clock)
    assert m.source is Provenance.UNAVAILABLE
    m.start()
    notes = m.stop().notes
    assert any("no INA3221 rails" in n and "rail_name_0" in n for n in notes)


# ----------------------------------------------------------------------------- RAPL
def test_rapl_counts_packages_and_dram_only(tmp_path: Path, clock: FakeClock) -> None:
    files = rapl(tmp_path, SERVER)
    write(tmp_path / POWERCAP / "intel-rapl-mmio:0" / "name", "package-0")
    m = meter(tmp_path, clock)
    assert m.source is Provenance.RAPL
    m.start()
    for folder, delta_uj in [("intel-rapl:0", 3_000_000), ("intel-rapl:0:2", 500_000)]:
        write(files[folder], SERVER[folder][1] + delta_uj)
    write(files["intel-rapl:0:0"], 99_000_000)  # core: inside package-0, ignored
    clock.now += 1.0
    reading = m.stop()
    assert reading.rails == {
        "package-0": pytest.approx(3.0),
        "dram@intel-rapl:0:2": pytest.approx(0.5),
        "package-1": pytest.approx(0.0),
        "dram@intel-rapl:1:2": pytest.approx(0.0),
    }
    assert reading.joules == pytest.approx(3.5)


def test_rapl_undoes_the_wrap_around(tmp_path: Path, clock: FakeClock) -> None:
    wrap = 262_143_328_850
    files = rapl(tmp_path, {"intel-rapl:0": ("package-0", wrap - 1_000_000, wrap)})
    m = meter(tmp_path, clock)
    m.start()
    write(files["intel-rapl:0"], 2_000_000)  # wrapped: 1 J before the top, 2 J after
    clock.now += 1.0
    m.sample()
    write(files["intel-rapl:0"], 5_000_000)
    clock.now += 1.0
    reading = m.stop()
    assert reading.joules == pytest.approx(6.0)
    assert any("wrapped around" in n for n in reading.notes)


def test_rapl_permission_denied_falls_back_with_a_note(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, where chmod 000 does not stop a read: refuse the read directly.
    rapl(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**12)})
    real_read_text = Path.read_text

    def read_text(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    m = meter(tmp_path, clock, estimate_j_per_image=1.0)
    m.start()
    reading = m.stop(images=3)
    assert reading.source is Provenance.COST_MODEL
    assert any(
        n.startswith("rapl: cannot read") and "(permission denied)" in n for n in reading.notes
    )


# ----------------------------------------------------------------------------- NVML
class NVMLError(Exception):
    pass


def fake_nvml(energy_mj: list[float] | None, power_mw: float = 80_000.0) -> Any:
    """A stand-in for the ``pynvml`` module, one GPU; ``energy_mj=None``: no energy counter."""
    calls: list[str] = []

    def energy(handle: object) -> float:
        if energy_mj is None:
            raise NVMLError("Not Supported")
        return energy_mj[0]

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=lambda handle: power_mw,
        calls=calls,
    )


def test_nvml_energy_counter_beats_rapl(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = [1_000_000.0]
    nvml = fake_nvml(counter)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    rapl(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**12)})
    m = meter(tmp_path, clock)
    m.start()
    counter[0] += 150_000.0  # mJ
    clock.now += 1.0
    reading = m.stop()
    assert reading.source is Provenance.NVML
    assert reading.rails == {"gpu0": pytest.approx(150.0)}
    assert any("energy counters of gpu0" in n for n in reading.notes)
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_without_an_energy_counter_samples_power(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(None, power_mw=80_000.0))
    m = meter(tmp_path, clock)
    m.start()
    clock.now += 2.0
    reading = m.stop()
    assert reading.source is Provenance.NVML
    assert reading.joules == pytest.approx(160.0)
    assert any("no energy counter" in n and "Not Supported" in n for n in reading.notes)


def test_nvml_that_fails_to_initialise_is_a_note(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = fake_nvml([0.0])

    def broken() -> None:
        raise NVMLError("Driver Not Loaded")

    nvml.nvmlInit = broken
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    m = meter(tmp_path, clock)
    m.start()
    notes = m.stop().notes
    assert "nvml: NVML nvmlInit failed (Driver Not Loaded)" in notes


# ----------------------------------------------------------------------------- fallback, order
def test_nothing_at_all_uses_the_estimate_and_says_why(tmp_path: Path, clock: FakeClock) -> None:
    m = meter(tmp_path, clock, estimate_j_per_image=0.5)
    assert m.source is Provenance.COST_MODEL
    m.start()
    clock.now += 4.0
    reading = m.stop(images=10)
    assert (reading.source, reading.joules, reading.seconds) == (Provenance.COST_MODEL, 5.0, 4.0)
    assert reading.joules_per_image == 0.5
    assert [n.split(":")[0] for n in reading.notes] == ["ina3221", "nvml", "rapl", "cost-model"]
    assert "nvml: pynvml is not installed" in reading.notes


@pytest.mark.parametrize(
    ("estimate", "images", "source", "note"),
    [
        (None, 10, Provenance.UNAVAILABLE, "cost-model: no estimate given"),
        (0.5, None, Provenance.COST_MODEL, "the number of images was not given"),
    ],
)
def test_no_figure_at_all_is_none_not_a_guess(
    tmp_path: Path,
    clock: FakeClock,
    estimate: float | None,
    images: int | None,
    source: Provenance,
    note: str,
) -> None:
    m = meter(tmp_path, clock, estimate_j_per_image=estimate)
    m.start()
    reading = m.stop(images=images)
    assert (reading.source, reading.joules, reading.joules_per_image) == (source, None, None)
    assert note in reading.notes[-1]


def test_ina3221_comes_first_and_order_can_be_chosen(tmp_path: Path, clock: FakeClock) -> None:
    jetpack5(tmp_path, ORIN_JP5)
    rapl(tmp_path, {"intel-rapl:0": ("package-0", 0, 10**12)})
    assert meter(tmp_path, clock).source is Provenance.INA3221
    assert meter(tmp_path, clock, order=["rapl"]).source is Provenance.RAPL
    assert meter(tmp_path, clock, order=[]).source is Provenance.UNAVAILABLE
    with pytest.raises(UnknownNameError, match="choose one of: ina3221, nvml, rapl"):
        meter(tmp_path, clock, order=["tegrastats"])


def test_every_registered_source_has_a_place_in_the_order() -> None:
    assert sorted(SOURCE_ORDER) == ENERGY_SOURCES.names()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"estimate_j_per_image": -1.0}, "`estimate_j_per_image` must be"),
        ({"estimate_j_per_image": math.nan}, "`estimate_j_per_image` must be"),
        ({"interval_s": 0.0}, "`interval_s` must be > 0 or None"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        EnergyMeter.best_available(tmp_path, **options)


def test_stop_needs_one_start(tmp_path: Path, clock: FakeClock) -> None:
    m = meter(tmp_path, clock)
    with pytest.raises(InvalidParameterError, match="`stop` needs a started meter"):
        m.stop()
    m.start()
    with pytest.raises(InvalidParameterError, match="`images` must be >= 0"):
        m.stop(images=-1)
    m.stop()
    with pytest.raises(InvalidParameterError, match="`stop` needs a started meter"):
        m.stop()


# ----------------------------------------------------------------------------- background thread
class ConstantPower(PowerSource):
    name = "constant"
    provenance = Provenance.INA3221

    def __init__(self, watts: float, reads: int) -> None:
        super().__init__(["rail"])
        self.watts, self.reads, self.enough = watts, reads, threading.Event()

    @classmethod
    def probe(cls, context: ProbeContext) -> ConstantPower:
        raise SourceUnavailable("built directly in tests")

    def read(self) -> dict[str, float]:
        self.reads -= 1
        if self.reads <= 0:
            self.enough.set()
        return {"rail": self.watts}


def test_the_background_thread_samples_until_stop() -> None:
    source = ConstantPower(2.0, reads=4)  # start + 3 background samples
    m = EnergyMeter([source], interval_s=0.001)
    m.start()
    assert source.enough.wait(timeout=5.0)
    reading = m.stop()
    assert reading.joules == pytest.approx(2.0 * reading.seconds)  # exact for constant power
    assert not any(t.name == "energy-meter" for t in threading.enumerate())


# ----------------------------------------------------------------------------- memory, node
def test_memory_peak_from_vmhwm(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n")
    reading = MemoryMeter(proc_status=status, cuda=False).read()
    assert (reading.peak_rss_bytes, reading.cuda_peak_bytes) == (2048 * 1024, None)
    assert reading.source is Provenance.VMHWM


@pytest.mark.parametrize("content", ["VmHWM:\tlots\n", "Name:\tpython\n", None])
def test_memory_falls_back_to_getrusage(tmp_path: Path, content: str | None) -> None:
    status = tmp_path / "status"
    if content is not None:
        status.write_text(content)
    reading = MemoryMeter(proc_status=status, cuda=False).read()
    assert reading.source is Provenance.GETRUSAGE
    assert reading.peak_rss_bytes > 1024 * 1024


@pytest.mark.parametrize(("initialised", "cuda", "peak"), [(True, None, 123), (False, None, None)])
def test_cuda_peak_only_where_cuda_was_used(
    monkeypatch: pytest.MonkeyPatch, initialised: bool, cuda: bool | None, peak: int | None
) -> None:
    fake_cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: initialised,
        max_memory_allocated=lambda: 123,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    assert MemoryMeter(cuda=cuda).read().cuda_peak_bytes == peak


def test_node_meters_report_round_trips_through_json(tmp_path: Path, clock: FakeClock) -> None:
    jetpack4(tmp_path, NANO)
    status = tmp_path / "status"
    status.write_text("VmHWM:\t    4096 kB\n")
    energy = meter(tmp_path, clock)
    meters = NodeMeters(energy, MemoryMeter(proc_status=status, cuda=False), clock=clock)
    meters.start()
    clock.now += 2.0
    report = meters.stop(images=50)
    assert (report.wall_s, report.fps) == (2.0, 25.0)
    assert report.energy.joules == pytest.approx(10.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["energy"]["source"] == "measured:ina3221"
    assert data["energy"]["joules_per_image"] == pytest.approx(0.2)
    assert data["memory"] == {
        "peak_rss_bytes": 4096 * 1024,
        "cuda_peak_bytes": None,
        "source": "measured:vmhwm",
    }
    assert MeterReport.from_dict(data) == report
