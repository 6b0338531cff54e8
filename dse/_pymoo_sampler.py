"""pymoo's NSGA-II / NSGA-III as an Optuna sampler, driven through pymoo's ask/tell.

Optuna stays the record (storage, resume, dashboard); pymoo proposes a generation at a time.
Each trial takes the next individual of the current generation; when every individual of it
has finished, the generation is told back to pymoo. On resume the sampler is rebuilt from the
stored trials: the completed ones are told to pymoo as its starting population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population
from pymoo.core.problem import Problem

__all__ = ["PymooSampler"]

_PENALTY = 1e12  # objective value given to failed trials so pymoo ranks them last


class PymooSampler(BaseSampler):
    """Args:
    algorithm_factory: builds a fresh pymoo algorithm (e.g. ``lambda: NSGA2(pop_size=24)``).
    space: parameter name -> (low, high), in a fixed order.
    constraint_names: the constraints the objective records, in order, as Optuna's list
        (`dse._record.record_constraints`; <= 0 is feasible); read back from
        ``trial.constraints``, keyed by position.
    """

    def __init__(
        self,
        algorithm_factory: Callable[[], Algorithm],
        space: dict[str, tuple[float, float]],
        *,
        seed: int | None = None,
        constraint_names: Sequence[str] = (),
    ) -> None:
        self._factory = algorithm_factory
        self._names = list(space)
        self._low = np.array([space[n][0] for n in self._names])
        self._high = np.array([space[n][1] for n in self._names])
        self._seed = seed
        self._constraint_names = tuple(constraint_names)
        self._fallback = RandomSampler(seed=seed)
        self._algorithm: Algorithm | None = None
        self._pending: list[np.ndarray] = []  # individuals not yet handed to a trial
        self._batch: dict[int, np.ndarray] = {}  # trial number -> x, current generation
        self._results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- Optuna's sampler interface ----------------------------------------------------
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {
            n: FloatDistribution(lo, hi)
            for n, lo, hi in zip(self._names, self._low, self._high, strict=True)
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:
            return {}  # an enqueued trial (e.g. a retry after a crash) brings its own params
        if self._algorithm is None:
            self._start(study)
        if not self._pending:
            self._next_generation()
        x = self._pending.pop(0)
        self._batch[trial.number] = x
        return {n: float(v) for n, v in zip(self._names, x, strict=True)}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if trial.number not in self._batch:
            return
        signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])
        if state == TrialState.COMPLETE and values is not None:
            f = signs * np.asarray(values, dtype=float)
            g = self._constraints(trial)
        else:
            f = np.full(len(study.directions), _PENALTY)
            g = np.full(len(self._constraint_names), _PENALTY)
        self._results[trial.number] = (f, g)
        if not self._pending and set(self._batch) <= set(self._results):
            self._tell_generation()

    # -- helpers ----------------------------------------------------------------------------
    def _problem(self, n_obj: int) -> Problem:
        return Problem(
            n_var=len(self._names),
            n_obj=n_obj,
            n_ieq_constr=len(self._constraint_names),
            xl=self._low,
            xu=self._high,
        )

    def _constraints(self, trial: FrozenTrial) -> np.ndarray:
        recorded = trial.constraints
        count = len(self._constraint_names)
        return np.array([recorded.get(str(i), _PENALTY) for i in range(count)], dtype=float)

    def _start(self, study: Study) -> None:
        """Set up pymoo; completed trials from an earlier run become its population."""
        self._algorithm = self._factory()
        self._algorithm.setup(
            self._problem(len(study.directions)), seed=self._seed, termination=("n_gen", 10**9)
        )
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(n in t.params for n in self._names)
        ]
        if done:
            signs = np.array(
                [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
            )
            population = Population.new(
                "X", np.array([[t.params[n] for n in self._names] for t in done])
            )
            population.set(
                "F",
                np.array([signs * np.asarray(t.values) for t in done]),
                "G",
                np.array([self._constraints(t) for t in done]).reshape(len(done), -1),
            )
            self._algorithm.tell(infills=population)

    def _next_generation(self) -> None:
        assert self._algorithm is not None
        population = self._algorithm.ask()
        self._pending = [np.clip(x, self._low, self._high) for x in population.get("X")]
        self._batch, self._results = {}, {}

    def _tell_generation(self) -> None:
        assert self._algorithm is not None
        numbers = sorted(self._batch)
        population = Population.new("X", np.array([self._batch[n] for n in numbers]))
        population.set(
            "F",
            np.array([self._results[n][0] for n in numbers]),
            "G",
            np.array([self._results[n][1] for n in numbers]).reshape(len(numbers), -1),
        )
        self._algorithm.tell(infills=population)
        self._batch, self._results = {}, {}
