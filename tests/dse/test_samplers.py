"""Every registered sampler passes the same contract on a cheap two-objective problem."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import Trial, TrialState

from dse import DEFAULT_SAMPLER, SAMPLERS, PymooSampler, SamplerRequest, record_constraints

SPACE = {"t:a": (0.0, 1.0), "t:b": (0.0, 2.0), "t:c": (0.5, 1.5)}


def _objective(trial: Trial) -> tuple[float, float]:
    x = np.array([trial.suggest_float(n, lo, hi) for n, (lo, hi) in SPACE.items()])
    record_constraints(trial, [float(x[0] - 0.8)])  # feasible when t:a <= 0.8
    return float(np.sum(x**2)), float(np.sum((x - 1) ** 2))


def _study(
    name: str, seed: int = 0, storage: optuna.storages.BaseStorage | None = None
) -> optuna.Study:
    request = SamplerRequest(
        seed=seed,
        space=SPACE,
        n_objectives=2,
        constraint_names=("a_at_most_0.8",),
        population_size=4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = SAMPLERS.get(name)(request)
    return optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=sampler,
        storage=storage,
        study_name=name,
        load_if_exists=True,
    )


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_contract(name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(name)
    study.optimize(_objective, n_trials=12)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 12
    for trial in trials:
        for param, (low, high) in SPACE.items():
            assert low <= trial.params[param] <= high
    again = _study(name)
    again.optimize(_objective, n_trials=12)
    same_seed = [t.params for t in again.get_trials()]
    assert same_seed == [t.params for t in study.get_trials()], "same seed, same trials"


def test_default_sampler_is_registered() -> None:
    assert DEFAULT_SAMPLER in SAMPLERS


def test_pymoo_sampler_tells_whole_generations_and_warm_starts() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = _study("pymoo-nsga2", storage=storage)
    study.optimize(_objective, n_trials=9)  # two full generations of 4, one pending
    sampler = study.sampler
    assert isinstance(sampler, PymooSampler)
    assert sampler._algorithm is not None and sampler._algorithm.n_gen >= 2
    # A rebuilt sampler (a resumed run) starts from the completed trials, not from scratch.
    resumed = _study("pymoo-nsga2", seed=1, storage=storage)
    resumed.optimize(_objective, n_trials=4)
    rebuilt = resumed.sampler
    assert isinstance(rebuilt, PymooSampler) and rebuilt._algorithm is not None
    assert rebuilt._algorithm.is_initialized
    assert len(resumed.get_trials(states=(TrialState.COMPLETE,))) == 13


def test_pymoo_sampler_reads_constraints_from_optunas_record() -> None:
    study = _study("pymoo-nsga2")
    study.optimize(_objective, n_trials=8)  # two whole generations told to pymoo
    sampler = study.sampler
    assert isinstance(sampler, PymooSampler) and sampler._algorithm is not None
    told = sampler._algorithm.pop
    for x, g in zip(told.get("X"), told.get("G"), strict=True):
        assert g[0] == pytest.approx(x[0] - 0.8)  # the value Optuna recorded, not a copy
