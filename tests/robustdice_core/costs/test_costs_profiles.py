"""Device and link profiles: built-ins, user folders, explicit files, malformed files."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from robustdice_core._errors import CorruptFileError, InvalidParameterError, UnknownNameError
from robustdice_core.costs import (
    PROFILES_ENV,
    DeviceProfile,
    LinkProfile,
    Medium,
    ProfileValue,
    device_profiles,
    link_profiles,
    load_device_profile,
    load_link_profile,
    load_profile,
)

BUILTIN_DIR = Path(__file__).resolve().parents[3] / "robustdice_core" / "costs" / "profiles"

LINK_TOML = """\
kind = "link"
name = "{name}"
description = "a test link"
medium = "switched"

[bandwidth_bytes_per_s]
value = 1e6
source = "test"
estimated = false

[latency_s]
value = 1e-3
source = "test"
estimated = true

[tx_energy_j_per_byte]
value = 1e-9
source = "test"
estimated = true

[rx_energy_j_per_byte]
value = 1e-9
source = "test"
estimated = true
"""


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILES_ENV, raising=False)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _device_text(name: str = "my_board") -> str:
    """A valid device file: the 15 W Jetson profile under another name."""
    text = (BUILTIN_DIR / "jetson_xavier_nx_15w.toml").read_text(encoding="utf-8")
    return text.replace('name = "jetson_xavier_nx_15w"', f'name = "{name}"')


def test_builtin_profiles_are_listed() -> None:
    assert {"jetson_xavier_nx_10w", "jetson_xavier_nx_15w", "jetson_xavier_nx_20w"} <= set(
        device_profiles()
    )
    assert "this_machine" in device_profiles()
    assert {"gigabit_ethernet", "wifi", "loopback"} <= set(link_profiles())


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_builtin_number_has_a_source(path: Path) -> None:
    profile = load_profile(path)
    values = [getattr(profile, f.name) for f in fields(profile)]
    numbers = [v for v in values if isinstance(v, ProfileValue)]
    assert len(numbers) >= 4
    assert all(v.source and isinstance(v.estimated, bool) for v in numbers)
    assert profile.name == path.stem and profile.description


def test_jetson_datasheet_values() -> None:
    nx = load_device_profile("jetson_xavier_nx_15w")
    assert nx.memory_bytes.value == 8 * 2**30 and not nx.memory_bytes.estimated
    assert nx.memory_bandwidth_bytes_per_s.value == 51.2e9
    assert nx.peak_flops_fp32.value == pytest.approx(384 * 2 * 1109.25e6)
    assert nx.compute_efficiency_fp32.estimated and nx.idle_power_w.estimated
    slow = load_device_profile("jetson_xavier_nx_10w")
    assert slow.peak_flops_fp32.value < nx.peak_flops_fp32.value
    assert slow.energy_per_flop_fp16_j.value < nx.energy_per_flop_fp16_j.value
    assert nx.flops_per_s(2) == pytest.approx(
        nx.peak_flops_fp16.value * nx.compute_efficiency_fp16.value
    )


def test_link_media() -> None:
    assert load_link_profile("gigabit_ethernet").medium is Medium.SWITCHED
    assert load_link_profile("wifi").medium is Medium.SHARED
    assert load_link_profile("gigabit_ethernet").bandwidth_bytes_per_s.value == 117.7e6


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError, match="jetson_xavier_nx_15w"):
        load_device_profile("raspberry_pi")
    with pytest.raises(UnknownNameError, match="gigabit_ethernet"):
        load_link_profile("jetson_xavier_nx_15w")  # a device is not a link


def test_user_folder_adds_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "my_board", _device_text())
    _write(tmp_path, "lab_net", LINK_TOML.format(name="lab_net"))
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    assert isinstance(load_device_profile("my_board"), DeviceProfile)
    assert load_link_profile("lab_net").latency_s == ProfileValue(1e-3, "test", True)
    assert "my_board" in device_profiles() and "lab_net" in link_profiles()


def test_user_profile_may_not_shadow_a_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "nx", _device_text("jetson_xavier_nx_15w"))
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    with pytest.raises(InvalidParameterError, match="already defined"):
        load_device_profile("jetson_xavier_nx_15w")


def test_user_folder_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path / "missing"))
    with pytest.raises(InvalidParameterError, match=PROFILES_ENV):
        device_profiles()


def test_load_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "lab_net", LINK_TOML.format(name="lab_net"))
    link = load_link_profile(str(path))
    assert isinstance(link, LinkProfile) and link.path == str(path)
    with pytest.raises(InvalidParameterError, match="describes a link"):
        load_device_profile(path)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    text = LINK_TOML.format(name="x").replace('name = "x"\n', "")
    assert load_profile(_write(tmp_path, "from_stem", text)).name == "from_stem"


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('medium = "switched"', 'medium = "carrier pigeon"', "`medium`"),
        ('kind = "link"', 'kind = "router"', "`kind`"),
        ("value = 1e6", 'value = "fast"', "`bandwidth_bytes_per_s`.*finite number"),
        ("value = 1e6", "value = 0", "`bandwidth_bytes_per_s`.*> 0"),
        ("value = 1e-3", "value = -1e-3", "`latency_s`.*>= 0"),
        ('value = 1e-3\nsource = "test"', "value = 1e-3\nsource = ''", "`latency_s`.*source"),
        ("estimated = false", 'estimated = "no"', "`estimated`"),
        ("[latency_s]", "[latency]", "unknown field `latency`"),
        (
            'source = "test"\nestimated = false',
            'source = "t"\nestimated = false\nunit = "B"',
            "`unit`",
        ),
        ("[tx_energy_j_per_byte]\nvalue", "tx_energy_j_per_byte = 1\n[x]\nvalue", "unknown field"),
        ('name = "bad"', "name = 3", "`name`"),
        ("medium", "medium = [", "not valid TOML"),
    ],
)
def test_malformed_link_file(tmp_path: Path, old: str, new: str, match: str) -> None:
    text = LINK_TOML.format(name="bad")
    assert old in text
    path = _write(tmp_path, "bad", text.replace(old, new, 1))
    with pytest.raises(CorruptFileError, match=match) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    text = _device_text().replace("[idle_power_w]", "[idle_power]")
    path = _write(tmp_path, "bad", text)
    with pytest.raises(CorruptFileError, match="unknown field `idle_power`"):
        load_profile(path)
    path = _write(tmp_path, "bad2", _device_text().split("[idle_power_w]")[0])
    with pytest.raises(CorruptFileError, match="`idle_power_w` is missing"):
        load_profile(path)


def test_efficiency_must_be_a_fraction(tmp_path: Path) -> None:
    text = _device_text().replace("value = 0.7\n", "value = 1.5\n")
    with pytest.raises(CorruptFileError, match="`bandwidth_efficiency`.*\\(0, 1\\]"):
        load_profile(_write(tmp_path, "bad", text))


def test_missing_file() -> None:
    with pytest.raises(CorruptFileError, match="does not exist"):
        load_profile("/nonexistent/profile.toml")


def test_to_dict_keeps_sources() -> None:
    data = load_link_profile("wifi").to_dict()
    assert data["kind"] == "link" and data["medium"] == "shared"
    assert data["latency_s"]["estimated"] is True and data["latency_s"]["source"]


def test_message_overhead_is_optional_and_checked(tmp_path: Path) -> None:
    plain = load_profile(_write(tmp_path, "plain", _device_text("plain")))
    assert isinstance(plain, DeviceProfile) and plain.message_overhead_s.value == 0.0
    assert "message_overhead_s" not in plain.to_dict()  # the default keeps old fingerprints
    priced = _device_text("priced") + (
        '\n[message_overhead_s]\nvalue = 2e-4\nsource = "fitted"\nestimated = true\n'
    )
    profile = load_profile(_write(tmp_path, "priced", priced))
    assert isinstance(profile, DeviceProfile) and profile.message_overhead_s.value == 2e-4
    assert profile.to_dict()["message_overhead_s"]["source"] == "fitted"
    with pytest.raises(CorruptFileError, match="`message_overhead_s`.*>= 0"):
        load_profile(_write(tmp_path, "bad", priced.replace("value = 2e-4", "value = -1.0")))
