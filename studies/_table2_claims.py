"""The paper's Table 2 trends as data, checked on the estimated columns.

Each claim compares pairs of configurations (by their labels) on one figure; a pair counts
for every model that has both rows. Claims whose configurations a spec does not have are
left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from studies._result import Finding, verdict_of

__all__ = ["TABLE2_CLAIMS", "Claim", "table2_findings"]

ROBUST = ("Robust-SysConf4D", "Robust-SysConf3D", "Robust-SysConf2D")


@dataclass(frozen=True)
class Claim:
    """``first`` is below (``lower``) or at least (not ``lower``) ``second`` on ``figure``,
    for every pair."""

    text: str
    figure: str  # estimated_<figure> column
    lower: bool
    pairs: tuple[tuple[str, str], ...]


TABLE2_CLAIMS = (
    Claim(
        "RobustDiCE needs less memory per device than full replication (paper: AlexNet "
        "-52 / -46 / -34 % on 4 / 3 / 2 devices).",
        "max_memory_mb",
        True,
        tuple((r, "QMR") for r in ROBUST),
    ),
    Claim(
        "CDC needs less memory than full replication but more than RobustDiCE.",
        "max_memory_mb",
        True,
        (
            ("CDC-SysConf3D", "QMR"),
            ("CDC-SysConf4D", "QMR"),
            ("Robust-SysConf3D", "CDC-SysConf3D"),
            ("Robust-SysConf4D", "CDC-SysConf4D"),
        ),
    ),
    Claim(
        "RobustDiCE uses less energy per device than full replication (paper: -21 / -8 / "
        "-6 % on 4 devices for AlexNet / VGG16-BN / ConvNeXt-Tiny).",
        "max_energy_j",
        True,
        tuple((r, "QMR") for r in ROBUST),
    ),
    Claim(
        "CDC uses less energy than full replication but more than RobustDiCE.",
        "max_energy_j",
        True,
        (
            ("CDC-SysConf3D", "QMR"),
            ("CDC-SysConf4D", "QMR"),
            ("Robust-SysConf3D", "CDC-SysConf3D"),
            ("Robust-SysConf4D", "CDC-SysConf4D"),
        ),
    ),
    Claim(
        "RobustDiCE's throughput is at or above full replication's (all but ConvNeXt-Tiny "
        "on 2 devices).",
        "fps",
        False,
        tuple((r, "QMR") for r in ROBUST),
    ),
    Claim(
        "CDC's throughput is below full replication's and RobustDiCE's.",
        "fps",
        True,
        (
            ("CDC-SysConf3D", "QMR"),
            ("CDC-SysConf4D", "QMR"),
            ("CDC-SysConf3D", "Robust-SysConf3D"),
            ("CDC-SysConf4D", "Robust-SysConf4D"),
        ),
    ),
)


def table2_findings(table: pd.DataFrame) -> list[Finding]:
    """Each claim checked on the estimated figures (mean over training seeds)."""
    findings = []
    for claim in TABLE2_CLAIMS:
        column = f"estimated_{claim.figure}"
        values = table.groupby(["model", "configuration"], sort=False)[column].mean()
        holds, cells, misses = 0, 0, []
        for model in dict.fromkeys(table["model"]):
            for first, second in claim.pairs:
                if (model, first) not in values or (model, second) not in values:
                    continue
                a, b = float(values[(model, first)]), float(values[(model, second)])
                ok = a < b if claim.lower else a >= b
                cells += 1
                holds += ok
                if not ok:
                    misses.append(f"{model} {first} {_short(a)} vs {second} {_short(b)}")
        if not cells:
            continue
        ours = f"holds in {holds} of {cells} pairs (estimated)"
        if misses:
            ours += "; not for " + "; ".join(misses[:6]) + ("; ..." if len(misses) > 6 else "")
        findings.append(Finding(claim.text, ours + ".", verdict_of(holds, cells)))
    return findings


def _short(value: float) -> str:
    return f"{value:.4g}"
