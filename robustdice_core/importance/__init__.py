"""Neuron importance scores s1 (magnitude), s2 (Taylor sensitivity), s3 (JSD ablation)."""

from __future__ import annotations

from robustdice_core.importance._base import ImportanceScorer
from robustdice_core.importance._divergence import DivergenceScorer, jensen_shannon
from robustdice_core.importance._magnitude import MagnitudeScorer
from robustdice_core.importance._scores import (
    SCORERS,
    ImportanceScores,
    compute_scores,
    parse_score_names,
)
from robustdice_core.importance._taylor import TaylorScorer

__all__ = [
    "DivergenceScorer",
    "ImportanceScorer",
    "ImportanceScores",
    "MagnitudeScorer",
    "SCORERS",
    "TaylorScorer",
    "compute_scores",
    "jensen_shannon",
    "parse_score_names",
]
