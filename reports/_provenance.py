"""Every figure says where its numbers come from (DESIGN 3.7): subtitles from the input."""

from __future__ import annotations

from collections.abc import Sequence

from reports._frames import provenance_of
from reports._input import ObjectiveMeta, ReportInput

__all__ = ["accuracy_subtitle", "cost_subtitle", "objectives_subtitle"]


def cost_subtitle(data: ReportInput, provenance: str | None = None) -> str:
    """E.g. ``"costs estimated by the cost model · 4 × jetson_xavier_nx_15w, gigabit_ethernet,
    fp32"``; ``provenance`` (``estimated`` / ``measured``) defaults to the trials' records'."""
    kind = provenance_of(data.trials) if provenance is None else provenance
    source = "estimated by the cost model" if kind == "estimated" else kind
    return _join(f"costs {source}", data.profile)


def accuracy_subtitle(data: ReportInput) -> str:
    """How Top-1 was obtained (the input's ``accuracy_source``)."""
    return data.accuracy_source or "Top-1 from simulated device failures"


def objectives_subtitle(data: ReportInput, objectives: Sequence[ObjectiveMeta]) -> str:
    """For a figure mixing accuracy and costs: both sources, with the objectives they cover."""
    accuracy = [o.name for o in objectives if o.accuracy]
    costs = [o.name for o in objectives if not o.accuracy]
    parts = []
    if accuracy:
        parts.append(f"{', '.join(accuracy)}: {accuracy_subtitle(data)}")
    if costs:
        parts.append(f"{', '.join(costs)}: {cost_subtitle(data)}")
    return " · ".join(parts)


def _join(*parts: str) -> str:
    return " · ".join(p for p in parts if p)
