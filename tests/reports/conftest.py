"""Small, hand-made report inputs whose answers are known."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from reports import ObjectiveMeta, ReportInput

ACC = ObjectiveMeta("acc", "Top-1 %", maximize=True, accuracy=True, description="worst, k=1")
MEM = ObjectiveMeta("mem", "max MB/device", maximize=False)
ENERGY = ObjectiveMeta("energy", "max J/img/device", maximize=False)

# 3 devices; trial 0: (90, 1.0) front; 1: (80, 0.5) front; 2: (70, 0.8) dominated by 1;
# 3: (95, 0.2) infeasible (it would dominate everything); 4: failed.
TRIALS = [
    # trial, state, feasible, acc, mem, energy, no failure, failed 0, failed 1, failed 2
    (0, "COMPLETE", True, 90.0, 1.0, 0.004, 96.0, 90.0, 92.0, 94.0),
    (1, "COMPLETE", True, 80.0, 0.5, 0.003, 96.0, 80.0, 86.0, 95.0),
    (2, "COMPLETE", True, 70.0, 0.8, 0.005, 95.0, 70.0, 75.0, 80.0),
    (3, "COMPLETE", False, 95.0, 0.2, 0.002, 97.0, 95.0, 96.0, 97.0),
    (4, "FAIL", False, None, None, None, None, None, None, None),
]


def trials_frame() -> pd.DataFrame:
    rows = []
    for n, state, feasible, acc, mem, energy, *top1 in TRIALS:
        row: dict[str, object] = {
            "trial": n,
            "state": state,
            "feasible": feasible,
            "acc": acc,
            "mem": mem,
            "energy": energy,
        }
        if state == "COMPLETE":
            labels = ("no failure", "failed 0", "failed 1", "failed 2")
            row.update({f"top1_pct[{label}]": v for label, v in zip(labels, top1, strict=True)})
            row.update(
                replication_factor=1.0 + n / 2,
                latency_ms=2.0 + n,
                provenance="estimated",
                **{f"partition_mb[d{d}]": (mem or 0) * (1 + d / 10) for d in range(3)},
                **{f"memory_mb[d{d}]": 1024 + (mem or 0) * (1 + d / 10) for d in range(3)},
                **{f"energy_j[d{d}]": (energy or 0) * (1 - d / 10) for d in range(3)},
                **{f"gflops[d{d}]": 0.002 * (d + 1) for d in range(3)},
                **{f"unit_replication[u{u}]": 1.0 + (n + u) % 3 for u in range(3)},
            )
            row.update({"t:a": 0.1 * n, "t:b": 0.2 * n})
        rows.append(row)
    return pd.DataFrame(rows)


def baselines_frame() -> pd.DataFrame:
    rows = [
        ("lop", "LOP", True, 60.0, 0.3, 0.004, (96.0, 40.0, 60.0, 50.0)),
        ("replication", "Full replication", False, 96.0, 3.0, 0.003, (96.0, 96.0, 96.0, 96.0)),
    ]
    labels = ("no failure", "failed 0", "failed 1", "failed 2")
    return pd.DataFrame(
        [
            {
                "method": method,
                "label": label,
                "feasible": feasible,
                "acc": acc,
                "mem": mem,
                "energy": energy,
                **{f"top1_pct[{f}]": v for f, v in zip(labels, top1, strict=True)},
            }
            for method, label, feasible, acc, mem, energy, top1 in rows
        ]
    )


def units_frame() -> pd.DataFrame:
    """Units 0 and 1 share parameter t:a (tied); unit 2 has t:b."""
    return pd.DataFrame(
        {
            "unit": [0, 1, 2],
            "layer": ["features.0", "features.3", "classifier.1"],
            "param": ["t:a", "t:a", "t:b"],
            "low": [0.0, 0.0, 0.0],
            "high": [1.5, 1.5, 2.0],
        }
    )


def make_input(
    objectives: tuple[ObjectiveMeta, ...] = (ACC, MEM), **changes: object
) -> ReportInput:
    values: dict[str, object] = {
        "study": "tiny",
        "storage": "runs/studies.log",
        "objectives": objectives,
        "devices": 3,
        "trials": trials_frame(),
        "baselines": baselines_frame(),
        "units": units_frame(),
        "hypervolume": pd.DataFrame(
            {"trial": [0, 1, 2, 3], "hypervolume": [0.2, 0.35, 0.35, 0.35]}
        ),
        "profile": "3 × test_board, test_link, fp32",
        "accuracy_source": "measured by simulated device failures on 10 test images",
        "default_trial": 1,
        "deploy_command": "dse deploy tiny --trial {trial} --storage runs/studies.log "
        "--out bundle-{trial}",
        "notes": ("a note",),
    }
    values.update(changes)
    return ReportInput(**values)  # type: ignore[arg-type]


@pytest.fixture
def data() -> ReportInput:
    return make_input()


@pytest.fixture
def data3() -> ReportInput:
    return make_input((ACC, MEM, ENERGY))


@pytest.fixture(scope="session")
def make() -> Callable[..., ReportInput]:
    """`make_input`: a tiny input with keyword changes."""
    return make_input


@pytest.fixture
def objectives3() -> tuple[ObjectiveMeta, ...]:
    return (ACC, MEM, ENERGY)


@pytest.fixture
def trials() -> pd.DataFrame:
    """The tiny input's trials frame, to change before building an input from it."""
    return trials_frame()
