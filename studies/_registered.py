"""The registered kinds and the paper's studies (a new study is one `STUDIES.add` away)."""

from __future__ import annotations

from studies._fig3 import compute_fig3, fig3_figures, fig3_headline
from studies._fig4 import compute_fig4
from studies._figures import fig4_figures, table1_figures, table2_figures
from studies._headlines import fig4_headline, table1_headline, table2_headline
from studies._kinds import KINDS, Preparation, StudyKind
from studies._spec import (
    STUDIES,
    AblationSpec,
    Configuration,
    FailureSweepSpec,
    ResourceSpec,
    TimeoutSpec,
)
from studies._table1 import compute_table1
from studies._table2 import compute_table2, needs_data

__all__ = ["PAPER_CONFIGURATIONS", "TREND_CONFIGURATIONS"]


def _ablation_scores(spec: AblationSpec) -> Preparation:
    return Preparation(tuple(sorted({s for subset in spec.score_subsets for s in subset})))


def _sweep_scores(spec: FailureSweepSpec) -> Preparation:
    return Preparation(spec.scores)


def _resource_scores(spec: ResourceSpec) -> Preparation:
    return Preparation(spec.scores, needs_data)


def _timeout_scores(spec: TimeoutSpec) -> Preparation:
    return Preparation(spec.scores)


KINDS.add(
    AblationSpec.kind,
    StudyKind(compute_table1, table1_figures, table1_headline, _ablation_scores),
)
KINDS.add(
    FailureSweepSpec.kind,
    StudyKind(compute_fig4, fig4_figures, fig4_headline, _sweep_scores),
)
KINDS.add(
    ResourceSpec.kind,
    StudyKind(compute_table2, table2_figures, table2_headline, _resource_scores),
)


KINDS.add(
    TimeoutSpec.kind,
    StudyKind(compute_fig3, fig3_figures, fig3_headline, _timeout_scores),
)

# The paper's Table 2 rows; QMR/TMR/DMR (full replication on 4/3/2) share its one row.
PAPER_CONFIGURATIONS = (
    Configuration("replication", 4, "QMR", "QMR/TMR/DMR"),
    Configuration("replication", 3, "TMR", "QMR/TMR/DMR"),
    Configuration("replication", 2, "DMR", "QMR/TMR/DMR"),
    Configuration("cdc", 3, "CDC-SysConf3D", "CDC-SysConf3D"),
    Configuration("cdc", 4, "CDC-SysConf4D", "CDC-SysConf4D"),
    Configuration("robustdice", 2, "Robust-SysConf2D", "Robust-SysConf2D"),
    Configuration("robustdice", 3, "Robust-SysConf3D", "Robust-SysConf3D"),
    Configuration("robustdice", 4, "Robust-SysConf4D", "Robust-SysConf4D"),
    Configuration("lop", 4, "LOP-SysConf4D"),  # not in the paper: the no-copies floor
)

# The per-device weight memory trend on 4 devices (docs/cost_model.md): baselines, then
# RobustDiCE from t = 0 (full replication) up.
TREND_CONFIGURATIONS = (
    Configuration("lop", 4, "LOP"),
    Configuration("cdc", 4, "CDC"),
    Configuration("replication", 4, "replication"),
    *(
        Configuration("robustdice", 4, f"RobustDiCE t={t:g}", thresholds=t)
        for t in (0.0, 0.01, 0.05, 0.1, 0.2, 0.4)
    ),
)

for _spec in (
    AblationSpec(
        name="table1",
        paper="Table 1",
        title="importance-score ablation at equal replication, over training seeds",
        seeds=(0, 1, 2),
    ),
    FailureSweepSpec(
        name="fig4",
        paper="Fig. 4",
        title="Top-1 under 1-3 failed devices on 4, 3 and 2 devices",
    ),
    ResourceSpec(
        name="table2",
        paper="Table 2",
        title="max per-device energy, throughput and memory (estimated)",
        configurations=PAPER_CONFIGURATIONS,
    ),
    ResourceSpec(
        name="table2-measured",
        paper="Table 2",
        title="max per-device energy, throughput and memory (estimated, and measured on local "
        "runtime nodes)",
        configurations=PAPER_CONFIGURATIONS,
        meter="local-runtime",
    ),
    ResourceSpec(
        name="table2-trend",
        paper="Table 2 (memory trend)",
        title="per-device weight memory of LOP, CDC, replication and RobustDiCE by threshold",
        models=("alexnet", "vgg16_bn", "convnext_tiny"),
        configurations=TREND_CONFIGURATIONS,
        scores=("s1",),
        dtype="fp32",
        reference="replication",
    ),
    TimeoutSpec(
        name="fig3",
        paper="Fig. 3",
        title="latency per image against the failure detector's timeout, one failure",
        models=("digits-vgg-bn",),
    ),
):
    STUDIES.add(_spec.name, _spec)
