"""Choosing one trial of a Pareto front by a documented rule (`dse pareto --pick`, `deploy`).

Rules (all on the feasible Pareto front; ties go to the lower trial number):

- ``knee``: the point closest (Euclidean) to the ideal point after every objective is
  mapped to [0, 1] by the study's reference box (0 = the best baseline value, 1 = the
  reference point; maximised objectives are negated first). A balanced compromise that does
  not depend on the objectives' units.
- ``max-acc``, ``min-mem``, ``min-energy``, ``max-fps``: the best value of that objective;
  among equal values, the one closest to the ideal point as for ``knee``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from optuna.trial import FrozenTrial

from dse._pareto import ReferenceBox
from robustdice_core import InvalidParameterError, Registry

__all__ = ["PICK_RULES", "PickRule", "pick_trial"]


@dataclass(frozen=True)
class PickRule:
    name: str
    objective: str | None  # None: the knee rule over every objective
    description: str


PICK_RULES: Registry[PickRule] = Registry("pick rule")
for _rule in (
    PickRule("knee", None, "closest to the ideal point in the normalised objective box"),
    PickRule("max-acc", "acc", "highest accuracy under failures"),
    PickRule("min-mem", "mem", "least memory per device"),
    PickRule("min-energy", "energy", "least energy per image per device"),
    PickRule("max-fps", "fps", "highest throughput"),
):
    PICK_RULES.add(_rule.name, _rule)

Score = Callable[[FrozenTrial], tuple[float, ...]]


def pick_trial(
    front: Sequence[FrozenTrial], objectives: Sequence[str], box: ReferenceBox, rule: str
) -> FrozenTrial:
    """The trial of ``front`` that ``rule`` chooses (see the module docstring)."""
    spec = PICK_RULES.get(rule)
    if not front:
        raise InvalidParameterError(
            "the study has no feasible completed trial to pick from; run more trials or "
            "relax `--max-mem-mb` / `--min-fps`."
        )
    distance = _distance_to_ideal(front, box)
    if spec.objective is None:
        return min(front, key=lambda t: (distance[t.number], t.number))
    if spec.objective not in objectives:
        raise InvalidParameterError(
            f"`--pick {rule}` needs the `{spec.objective}` objective, which this study does "
            f"not have (it has {', '.join(objectives)}); pick another rule, e.g. knee."
        )
    column = list(objectives).index(spec.objective)
    sign = -1.0 if box.maximize[column] else 1.0
    return min(front, key=lambda t: (sign * t.values[column], distance[t.number], t.number))


def _distance_to_ideal(front: Sequence[FrozenTrial], box: ReferenceBox) -> dict[int, float]:
    points = box.normalise(np.array([t.values for t in front], dtype=float))
    return {t.number: float(d) for t, d in zip(front, np.linalg.norm(points, axis=1), strict=True)}
