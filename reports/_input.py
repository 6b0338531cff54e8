"""What a report is made from: plain data that the `dse` side builds from a study.

`ReportInput` holds DataFrames in the layout of the study's CSV exports (`dse._export`), so a
report can be made from the exported files as well as from a live study:

- ``trials``: one row per trial. ``trial`` (number), ``state`` (``COMPLETE``, ``FAIL``, ...),
  ``feasible`` (bool), one column per objective (its name), one column per search parameter
  (``t:...``), and the trial record's figures: ``replication_factor``, ``latency_ms``,
  ``provenance`` (``estimated`` / ``measured``), ``top1_pct[<failure set>]`` (``no failure``,
  ``failed 0``, ``failed 1+3``: Top-1 %), ``<figure>[d<device>]`` (``memory_mb``,
  ``partition_mb``, ``energy_j``, ``gflops``, ...) and ``unit_replication[u<unit>]``
  (copies computed / neurons, per unit). Per-trial detail figures are computed from these.
- ``baselines``: one row per baseline, ``method`` and ``label`` instead of ``trial`` and
  ``state``; otherwise the same columns.
- ``units``: one row per unit: ``unit`` (index), ``layer`` (module name), ``param`` (the search
  parameter that sets its threshold) and optionally ``low`` / ``high`` (the parameter's range).
- ``hypervolume``: ``trial`` and ``hypervolume`` (of the feasible front of the completed
  trials up to and including that one, in the study's reference box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

__all__ = ["ObjectiveMeta", "ReportInput"]

_TRIAL_COLUMNS = ("trial", "state", "feasible")
_BASELINE_COLUMNS = ("method", "label")
_UNIT_COLUMNS = ("unit", "layer", "param")
_HV_COLUMNS = ("trial", "hypervolume")


@dataclass(frozen=True)
class ObjectiveMeta:
    """One objective: its column name, its label with unit, its direction.

    ``accuracy`` marks an objective computed from Top-1 under failures (measured by running
    the masked model), as opposed to a cost (estimated by the cost model or measured).
    ``description`` says how it is computed, for hover text and the page's notes.
    """

    name: str
    label: str
    maximize: bool
    accuracy: bool = False
    description: str = ""

    @property
    def axis_title(self) -> str:
        """E.g. ``"acc: Top-1 % (higher is better)"``."""
        better = "higher" if self.maximize else "lower"
        return f"{self.name}: {self.label} ({better} is better)"


@dataclass(frozen=True, eq=False)
class ReportInput:
    """Everything a report shows (see the module docstring for the frames' columns).

    ``deploy_command`` is the command that deploys a trial, with ``{trial}`` where the trial
    number goes (it is substituted literally, so other braces are safe). ``profile`` names the
    devices and link the costs are for; ``accuracy_source`` says how Top-1 was obtained.
    """

    study: str
    storage: str
    objectives: tuple[ObjectiveMeta, ...]
    devices: int
    trials: pd.DataFrame
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)
    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    hypervolume: pd.DataFrame = field(default_factory=pd.DataFrame)
    profile: str = ""
    accuracy_source: str = ""
    default_trial: int | None = None
    default_rule: str = "knee"
    deploy_command: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("`objectives` must name at least one objective.")
        if self.devices < 1:
            raise ValueError(f"`devices` must be at least 1, got {self.devices}.")
        names = [o.name for o in self.objectives]
        _require(self.trials, "trials", (*_TRIAL_COLUMNS, *names))
        if not self.baselines.empty:
            _require(self.baselines, "baselines", (*_BASELINE_COLUMNS, "feasible", *names))
        if not self.units.empty:
            _require(self.units, "units", _UNIT_COLUMNS)
        if not self.hypervolume.empty:
            _require(self.hypervolume, "hypervolume", _HV_COLUMNS)
        if self.default_trial is not None and self.default_trial not in self.completed_numbers:
            raise ValueError(
                f"`default_trial` must be a completed trial, got {self.default_trial}."
            )

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @cached_property
    def completed(self) -> pd.DataFrame:
        """The completed trials (those with objective values), indexed by trial number."""
        frame = self.trials[self.trials["state"] == "COMPLETE"]
        frame = frame.dropna(subset=self.objective_names)
        return frame.set_index("trial", drop=False).sort_index()

    @cached_property
    def completed_numbers(self) -> list[int]:
        return [int(n) for n in self.completed["trial"]]

    def row(self, trial: int) -> pd.Series:
        """The completed trial's row (a KeyError for any other trial)."""
        return self._rows[trial]

    @cached_property
    def _rows(self) -> dict[int, pd.Series]:
        return {int(n): row for n, row in self.completed.iterrows()}

    @property
    def params(self) -> list[str]:
        """The search parameters: the units table's, else the trials' ``t:`` columns."""
        if not self.units.empty:
            return list(dict.fromkeys(str(p) for p in self.units["param"]))
        return [str(c) for c in self.trials.columns if str(c).startswith("t:")]

    def deploy_command_for(self, trial: int) -> str:
        return self.deploy_command.replace("{trial}", str(trial))


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"`{name}` must have the column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, frame.columns)) or 'none'}."
        )
