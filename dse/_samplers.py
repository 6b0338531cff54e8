"""Sampler registry: Optuna's own samplers and pymoo's algorithms behind one signature."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

from optuna.exceptions import ExperimentalWarning
from optuna.samplers import (
    BaseSampler,
    GPSampler,
    NSGAIIISampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.util.ref_dirs import get_reference_directions

from dse._pymoo_sampler import PymooSampler
from robustdice_core import Registry

__all__ = ["SAMPLERS", "SamplerRequest", "DEFAULT_SAMPLER"]


@dataclass(frozen=True)
class SamplerRequest:
    """What every sampler factory gets.

    Every sampler reads the constraints that the objective records with
    ``trial.set_constraint`` (Optuna's own record, ``trial.constraints``).
    """

    seed: int | None
    space: dict[str, tuple[float, float]]
    n_objectives: int
    constraint_names: tuple[str, ...] = ()
    population_size: int = 24


SamplerFactory = Callable[[SamplerRequest], BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
# Best mean hypervolume at 50 to 200 trials on the embedded default
# (benchmarks/bench_samplers.py, docs/dse.md).
DEFAULT_SAMPLER = "gp"


@SAMPLERS.register("nsga2")
def _nsga2(r: SamplerRequest) -> BaseSampler:
    return NSGAIISampler(population_size=r.population_size, seed=r.seed)


@SAMPLERS.register("nsga3")
def _nsga3(r: SamplerRequest) -> BaseSampler:
    with warnings.catch_warnings():  # NSGA-III is marked experimental; we use it knowingly
        warnings.simplefilter("ignore", ExperimentalWarning)
        return NSGAIIISampler(population_size=r.population_size, seed=r.seed)


@SAMPLERS.register("tpe")
def _tpe(r: SamplerRequest) -> BaseSampler:
    # constant liar: trials running in other processes count as bad results, so parallel
    # workers do not all sample the same region (Optuna 5's default, stated for `--workers`)
    return TPESampler(seed=r.seed, multivariate=True, n_startup_trials=20, constant_liar=True)


@SAMPLERS.register("gp")
def _gp(r: SamplerRequest) -> BaseSampler:
    return GPSampler(seed=r.seed, n_startup_trials=20)


@SAMPLERS.register("random")
def _random(r: SamplerRequest) -> BaseSampler:
    return RandomSampler(seed=r.seed)


@SAMPLERS.register("pymoo-nsga2")
def _pymoo_nsga2(r: SamplerRequest) -> BaseSampler:
    return PymooSampler(
        lambda: NSGA2(pop_size=r.population_size),
        r.space,
        seed=r.seed,
        constraint_names=r.constraint_names,
    )


@SAMPLERS.register("pymoo-nsga3")
def _pymoo_nsga3(r: SamplerRequest) -> BaseSampler:
    def build() -> NSGA3:
        directions = get_reference_directions(
            "energy", r.n_objectives, r.population_size, seed=r.seed or 0
        )
        return NSGA3(ref_dirs=directions, pop_size=r.population_size)

    return PymooSampler(
        build,
        r.space,
        seed=r.seed,
        constraint_names=r.constraint_names,
    )
