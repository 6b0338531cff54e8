"""Device and link profiles: TOML data files where every number carries its source.

A profile file is a TOML document with ``kind = "device"`` or ``kind = "link"``, a ``name``
(defaults to the file stem), a ``description``, and one table per numeric field::

    [memory_bandwidth_bytes_per_s]
    value = 51.2e9
    source = "NVIDIA Jetson Xavier NX module data sheet: 128-bit LPDDR4x, 51.2 GB/s"
    estimated = false

A link profile may also say how it loses messages (all optional, for the runtime's link
emulation; the cost model ignores them): ``[loss]`` the probability in [0, 1) that one
message's transmission is lost (default 0); ``[retransmit_timeout_s]`` how long TCP waits
before it resends a lost transmission (default 0.2 s, Linux's minimum RTO; it doubles on each
further loss of the same message); ``loss_mode = "retransmit"`` (TCP, the default: a lost
message arrives late, and the ones behind it on the same connection wait for it) or
``"drop"`` (a datagram link: a lost message never arrives).

A device profile may also give ``[message_overhead_s]``: the processor time a node spends on
each message it sends or receives (serialising, encryption, the runtime's loop), charged to
its compute (default 0: not priced). On a Jetson with a native stack it is microseconds; the
Python runtime on a busy CPU makes it milliseconds, and `dse calibrate` fits it.

Built-in profiles live in ``robustdice_core/costs/profiles/``; a user adds more by putting
``*.toml`` files in the folder named by the ``ROBUSTDICE_PROFILES`` environment variable, or
loads one file with `load_profile`.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, fields
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from robustdice_core._errors import CorruptFileError, InvalidParameterError
from robustdice_core._registry import Registry

__all__ = [
    "PROFILES_ENV",
    "DeviceProfile",
    "LinkProfile",
    "LossMode",
    "Medium",
    "ProfileKind",
    "ProfileValue",
    "device_profiles",
    "link_profiles",
    "load_device_profile",
    "load_link_profile",
    "load_profile",
]

PROFILES_ENV = "ROBUSTDICE_PROFILES"
BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class ProfileValue:
    """One number of a profile, with where it comes from and whether it is an estimate."""

    value: float
    source: str
    estimated: bool

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "estimated": self.estimated}


class Medium(str, Enum):
    """How a link's transmissions share capacity."""

    SWITCHED = "switched"  # full-duplex point-to-point ports on a non-blocking switch
    SHARED = "shared"  # one collision domain: every transmission serialises (WiFi)


class LossMode(str, Enum):
    """What becomes of a lost transmission on a link."""

    RETRANSMIT = "retransmit"  # TCP: resent after the retransmission timeout, in order
    DROP = "drop"  # a datagram link: the message never arrives


NO_LOSS = ProfileValue(0.0, "default: no loss", estimated=False)
LINUX_MIN_RTO = ProfileValue(
    0.2, "default: Linux TCP's minimum retransmission timeout (TCP_RTO_MIN, 200 ms)", False
)
NO_MESSAGE_OVERHEAD = ProfileValue(
    0.0, "default: a message costs the node no processor time (not priced)", estimated=True
)


class ProfileKind(str, Enum):
    """What a profile file describes (its ``kind`` key)."""

    DEVICE = "device"
    LINK = "link"


@dataclass(frozen=True)
class DeviceProfile:
    """A compute node: throughput, memory, power (DESIGN 3.7)."""

    kind: ClassVar[ProfileKind] = ProfileKind.DEVICE

    name: str
    description: str
    memory_bytes: ProfileValue  # capacity
    peak_flops_fp32: ProfileValue  # FLOP/s
    peak_flops_fp16: ProfileValue  # FLOP/s
    compute_efficiency_fp32: ProfileValue  # sustained fraction of the fp32 peak (conv, linear)
    compute_efficiency_fp16: ProfileValue  # sustained fraction of the fp16 peak
    memory_bandwidth_bytes_per_s: ProfileValue
    bandwidth_efficiency: ProfileValue  # sustained fraction of the memory bandwidth
    unit_overhead_s: ProfileValue  # fixed time per unit: launches, dispatch, sync copies
    runtime_overhead_bytes: ProfileValue  # constant memory: runtime, framework, context
    idle_power_w: ProfileValue
    energy_per_flop_fp32_j: ProfileValue
    energy_per_flop_fp16_j: ProfileValue
    path: str = ""  # the file it was loaded from
    message_overhead_s: ProfileValue = NO_MESSAGE_OVERHEAD  # processor time per message

    def flops_per_s(self, dtype_bytes: int) -> float:
        """Sustained FLOP/s at 4-byte (fp32) or 2-byte (fp16) precision."""
        if dtype_bytes == 2:
            return self.peak_flops_fp16.value * self.compute_efficiency_fp16.value
        return self.peak_flops_fp32.value * self.compute_efficiency_fp32.value

    def energy_per_flop_j(self, dtype_bytes: int) -> float:
        """Dynamic energy of one FLOP at the given precision."""
        value = self.energy_per_flop_fp16_j if dtype_bytes == 2 else self.energy_per_flop_fp32_j
        return value.value

    @property
    def bytes_per_s(self) -> float:
        """Sustained memory bandwidth."""
        return self.memory_bandwidth_bytes_per_s.value * self.bandwidth_efficiency.value

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True)
class LinkProfile:
    """The network between the devices: bandwidth, per-message latency, energy per byte."""

    kind: ClassVar[ProfileKind] = ProfileKind.LINK

    name: str
    description: str
    medium: Medium
    bandwidth_bytes_per_s: ProfileValue  # sustained goodput of one port (switched) or the air
    latency_s: ProfileValue  # per-message fixed cost (stack, switch, medium access)
    tx_energy_j_per_byte: ProfileValue
    rx_energy_j_per_byte: ProfileValue
    path: str = ""
    loss: ProfileValue = NO_LOSS  # probability a message's transmission is lost, in [0, 1)
    retransmit_timeout_s: ProfileValue = LINUX_MIN_RTO  # first resend after a loss (TCP)
    loss_mode: LossMode = LossMode.RETRANSMIT

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


Profile = DeviceProfile | LinkProfile
P = TypeVar("P", DeviceProfile, LinkProfile)

_OPTIONAL: dict[str, Any] = {  # fields a file may leave out, with their defaults
    "loss": NO_LOSS,
    "message_overhead_s": NO_MESSAGE_OVERHEAD,
    "retransmit_timeout_s": LINUX_MIN_RTO,
    "loss_mode": LossMode.RETRANSMIT,
}
_PROBABILITIES = {"loss"}  # in [0, 1)
_FRACTIONS = {"compute_efficiency_fp32", "compute_efficiency_fp16", "bandwidth_efficiency"}
_POSITIVE = {
    "memory_bytes",
    "peak_flops_fp32",
    "peak_flops_fp16",
    "compute_efficiency_fp32",
    "compute_efficiency_fp16",
    "memory_bandwidth_bytes_per_s",
    "bandwidth_efficiency",
    "bandwidth_bytes_per_s",
    "retransmit_timeout_s",
}


def _to_dict(profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": profile.kind.value}
    for f in fields(profile):
        value = getattr(profile, f.name)
        if f.name in _OPTIONAL and value == _OPTIONAL[f.name]:
            continue  # left out at its default: older profiles keep their fingerprint
        if isinstance(value, ProfileValue):
            out[f.name] = value.to_dict()
        elif isinstance(value, (Medium, LossMode)):
            out[f.name] = value.value
        elif f.name != "path":
            out[f.name] = value
    return out


def _numeric_fields(cls: type[Profile]) -> list[str]:
    return [f.name for f in fields(cls) if f.type in ("ProfileValue", ProfileValue)]


# ----------------------------------------------------------------------------- parsing
def load_profile(path: str | os.PathLike[str]) -> DeviceProfile | LinkProfile:
    """Load one profile file (device or link, by its ``kind``)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CorruptFileError(f"profile file {file} does not exist.") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CorruptFileError(f"profile file {file} is not valid TOML: {err}.") from err
    kind = data.get("kind")
    if kind == DeviceProfile.kind.value:
        return _parse(DeviceProfile, data, file)
    if kind == LinkProfile.kind.value:
        return _parse(LinkProfile, data, file)
    raise CorruptFileError(
        f'profile file {file}: `kind` must be "device" or "link", got {kind!r}.'
    )


def _parse(cls: type[P], data: dict[str, Any], file: Path) -> P:
    numeric: list[str] = _numeric_fields(cls)
    allowed: set[str] = {"kind", "name", "description", *numeric}
    if cls is LinkProfile:
        allowed |= {"medium", "loss_mode"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise CorruptFileError(
            f"profile file {file}: unknown field `{unknown[0]}`; "
            f"allowed: {', '.join(sorted(allowed))}."
        )
    values: dict[str, Any] = {
        name: _value(data.get(name), name, file)
        for name in numeric
        if name in data or name not in _OPTIONAL  # optional ones left out keep their default
    }
    values["name"] = _text(data, "name", file, default=file.stem)
    values["description"] = _text(data, "description", file, default="")
    if cls is LinkProfile:
        values["medium"] = _choice(Medium, data, "medium", file)
        if "loss_mode" in data:
            values["loss_mode"] = _choice(LossMode, data, "loss_mode", file)
    return cls(path=str(file), **values)


def _text(data: dict[str, Any], key: str, file: Path, *, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or (key == "name" and not value.strip()):
        raise CorruptFileError(f"profile file {file}: field `{key}` must be a non-empty string.")
    return value


E = TypeVar("E", Medium, LossMode)


def _choice(enum: type[E], data: dict[str, Any], key: str, file: Path) -> E:
    try:
        return enum(data.get(key))
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise CorruptFileError(
            f"profile file {file}: field `{key}` must be one of {choices}, got {data.get(key)!r}."
        ) from None


def _value(entry: object, name: str, file: Path) -> ProfileValue:
    where = f"profile file {file}: field `{name}`"
    if not isinstance(entry, dict):
        raise CorruptFileError(
            f"{where} is missing or not a table with `value`, `source` and `estimated`."
        )
    extra = sorted(set(entry) - {"value", "source", "estimated"})
    if extra:
        raise CorruptFileError(f"{where} has an unknown key `{extra[0]}`.")
    value, source, estimated = entry.get("value"), entry.get("source"), entry.get("estimated")
    _check_number(value, name, where)
    if not isinstance(source, str) or not source.strip():
        raise CorruptFileError(f"{where}: `source` must say where the number comes from.")
    if not isinstance(estimated, bool):
        raise CorruptFileError(f"{where}: `estimated` must be true or false, got {estimated!r}.")
    assert isinstance(value, (int, float))
    return ProfileValue(float(value), source.strip(), estimated)


def _check_number(value: object, name: str, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CorruptFileError(f"{where}: `value` must be a finite number, got {value!r}.")
    if name in _FRACTIONS and not 0 < value <= 1:
        raise CorruptFileError(f"{where}: `value` must be in (0, 1], got {value!r}.")
    if name in _PROBABILITIES and not 0 <= value < 1:
        raise CorruptFileError(f"{where}: `value` must be in [0, 1), got {value!r}.")
    if name in _POSITIVE and value <= 0:
        raise CorruptFileError(f"{where}: `value` must be > 0, got {value!r}.")
    if value < 0:
        raise CorruptFileError(f"{where}: `value` must be >= 0, got {value!r}.")


# ----------------------------------------------------------------------------- registries
@lru_cache(maxsize=1)
def _builtin() -> tuple[Profile, ...]:
    return tuple(load_profile(p) for p in sorted(BUILTIN_DIR.glob("*.toml")))


def _user() -> tuple[Profile, ...]:
    folder = os.environ.get(PROFILES_ENV, "").strip()
    if not folder:
        return ()
    directory = Path(folder).expanduser()
    if not directory.is_dir():
        raise InvalidParameterError(
            f"`{PROFILES_ENV}` must name a folder of *.toml profiles; {directory} is not a folder."
        )
    return tuple(load_profile(p) for p in sorted(directory.glob("*.toml")))


def _registry(cls: type[P]) -> Registry[P]:
    kind = cls.kind.value
    registry: Registry[P] = Registry(f"{kind} profile")
    origin: dict[str, str] = {}
    for profile in (*_builtin(), *_user()):
        if not isinstance(profile, cls):
            continue
        if profile.name in registry:
            raise InvalidParameterError(
                f"{kind} profile `{profile.name}` in {profile.path} is already defined in "
                f"{origin[profile.name]}; give it another `name`."
            )
        registry.add(profile.name, profile)
        origin[profile.name] = profile.path
    return registry


def load_device_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A device profile by name (built-in or in ``$ROBUSTDICE_PROFILES``) or ``.toml`` path."""
    return _load(DeviceProfile, name_or_path)


def load_link_profile(name_or_path: str | os.PathLike[str]) -> LinkProfile:
    """A link profile by name (built-in or in ``$ROBUSTDICE_PROFILES``) or ``.toml`` path."""
    return _load(LinkProfile, name_or_path)


def device_profiles() -> list[str]:
    """Names of every known device profile."""
    return _registry(DeviceProfile).names()


def link_profiles() -> list[str]:
    """Names of every known link profile."""
    return _registry(LinkProfile).names()


def _load(cls: type[P], name_or_path: str | os.PathLike[str]) -> P:
    text = os.fspath(name_or_path)
    if not (text.endswith(".toml") or os.sep in text or "/" in text):
        return _registry(cls).get(text)
    profile = load_profile(text)
    if not isinstance(profile, cls):
        raise InvalidParameterError(
            f"profile file {text} describes a {profile.kind.value}, not a {cls.kind.value}; "
            f"pass it as a {profile.kind.value} profile."
        )
    return profile
