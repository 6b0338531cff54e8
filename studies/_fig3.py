"""Fig. 3: latency per image against the failure detector's timeout, under one failure.

This needs the runtime's timeout study (issue 11): real nodes, a real failure detector and
wall-clock latency. The spec is declared so its settings are fixed; running it refuses with
what is missing, and never makes numbers up.
"""

from __future__ import annotations

from collections.abc import Sequence

from studies._kinds import Progress
from studies._plan import ModelRun
from studies._result import StudyData
from studies._spec import StudyUnavailableError, TimeoutSpec

__all__ = ["compute_fig3", "fig3_unavailable"]


def fig3_unavailable(spec: TimeoutSpec) -> str:
    return f"needs {spec.needs}, not available yet"


def compute_fig3(spec: TimeoutSpec, runs: Sequence[ModelRun], progress: Progress) -> StudyData:
    raise StudyUnavailableError(f"study `{spec.name}` {fig3_unavailable(spec)}.")
