"""Racing (`--racing`): the bound, the staged evaluator, the decision and the trial records."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.trial import TrialState

from dse import (
    RobustnessProblem,
    StudySettings,
    TrialRecord,
    Workbench,
    open_workbench,
    prepare_study,
    run_study,
)
from dse._optimize import racing_front
from dse._problem import RACE_Z, StagedEvaluator, accuracy_upper_bound
from dse._record import RaceRecord
from robustdice_core import failure_sets

TEST_SIZE = 100
MODEL = "digits-vgg-bn"


@pytest.fixture(scope="module")
def bench() -> Workbench:
    return open_workbench(MODEL, test_size=TEST_SIZE)


def _problem(bench: Workbench, **options: object) -> RobustnessProblem:
    settings = StudySettings.parse(model=MODEL, test_size=TEST_SIZE, **options)
    return RobustnessProblem(settings, bench=bench)


# --------------------------------------------------------------------------- the bound
def test_upper_bound_is_above_the_estimate_and_below_what_the_rest_could_add() -> None:
    correct = np.array([0, 10, 45, 50])
    upper = accuracy_upper_bound(correct, 50, 500)
    estimate = correct / 50
    assert (upper >= estimate).all() and (upper <= 1).all()
    assert (upper <= (correct + 450) / 500).all()
    assert upper[-1] == 1.0 and upper[0] > 0
    assert (np.diff(upper) > 0).all()


def test_upper_bound_is_exact_on_the_whole_set_and_tightens_with_more_images() -> None:
    np.testing.assert_array_equal(accuracy_upper_bound(np.array([30]), 40, 40), [0.75])
    widths = [accuracy_upper_bound(np.array([n * 0.8]), n, 1000)[0] - 0.8 for n in (20, 100, 900)]
    assert widths[0] > widths[1] > widths[2] > 0


def test_upper_bound_is_wilsons_with_the_finite_population_correction() -> None:
    k, n, population = 40, 50, 500
    effective = n * (population - 1) / (population - n)
    p, z = k / n, RACE_Z
    wilson = (p + z**2 / (2 * effective)) + z * np.sqrt(
        p * (1 - p) / effective + z**2 / (4 * effective**2)
    )
    expected = wilson / (1 + z**2 / effective)
    assert accuracy_upper_bound(np.array([k]), n, population)[0] == pytest.approx(expected)


def test_upper_bound_covers_the_truth_on_random_subsets() -> None:
    """Sampled without replacement from a fixed population, the bound holds (z = 3)."""
    rng = np.random.default_rng(0)
    population = rng.random(500) < 0.85
    truth = population.mean()
    misses = 0
    for _ in range(2000):
        sample = rng.choice(population, size=50, replace=False)
        misses += accuracy_upper_bound(np.array([sample.sum()]), 50, 500)[0] < truth
    assert misses / 2000 < 0.01


# --------------------------------------------------------------------------- the evaluator
def test_the_two_parts_are_disjoint_and_add_up_to_the_whole_test_set(bench: Workbench) -> None:
    staged = StagedEvaluator(bench, 0.25)
    assert (staged.subset, staged.test_images) == (25, TEST_SIZE)
    assert len(staged.first.data) + len(staged.rest.data) == TEST_SIZE
    partition = bench.robustdice().partition_for(0.3, 4)
    sets = failure_sets(4, [0, 1, 2])
    whole = bench.require_evaluator().correct_counts(partition, sets)
    both = staged.first.correct_counts(partition, sets) + staged.rest.correct_counts(
        partition, sets
    )
    assert np.abs(both - whole).max() <= 1  # float32 batch-size noise at most
    again = StagedEvaluator(bench, 0.25)
    assert bool((again.first.data.labels == staged.first.data.labels).all())  # seeded


# --------------------------------------------------------------------------- the decision
def test_a_trial_dominated_by_the_front_is_raced_out(bench: Workbench) -> None:
    problem = _problem(bench, racing=0.3)
    params = [0.3] * len(problem.space.names)
    beaten = problem.evaluate_params(params, front=lambda: np.array([[100.0, 0.0, 0.0]]))
    race = beaten.race
    assert race is not None and race.raced_out and race.images == race.subset == 30
    per_set = beaten.outcome.accuracy
    assert per_set is not None
    assert all(round(a * race.subset) == a * race.subset for a in per_set.accuracy)
    assert beaten.values[0] <= race.acc_upper


def test_a_trial_that_could_reach_the_front_is_finished(bench: Workbench) -> None:
    raced = _problem(bench, racing=0.3)
    plain = _problem(bench)
    params = [0.3] * len(raced.space.names)
    finished = raced.evaluate_params(params, front=lambda: np.zeros((0, 3)))
    full = plain.evaluate_params(params)
    assert finished.race is not None and not finished.race.raced_out
    assert finished.race.images == TEST_SIZE
    assert finished.values[1:] == full.values[1:]
    assert finished.values[0] == pytest.approx(full.values[0], abs=100 / TEST_SIZE)
    assert raced.evaluate_params(params).race is None  # no front given: whole set, no race


def test_a_trial_that_breaks_a_constraint_is_raced_out(bench: Workbench) -> None:
    problem = _problem(bench, racing=0.3, max_mem_mb=10_000.0)
    params = list(problem.space.low)  # full replication: the most memory
    lop_memory = problem.baselines()["lop"].outcome.costs.max_memory_mb
    tight = problem.for_settings(problem.settings.replace(max_mem_mb=lop_memory + 0.01))
    out = tight.evaluate_params(params, front=lambda: np.zeros((0, 3)))
    assert out.constraints[0] > 0 and out.race is not None and out.race.raced_out


def test_race_records_round_trip_through_the_trial_attributes(bench: Workbench) -> None:
    problem = _problem(bench, racing=0.3)
    params = [0.3] * len(problem.space.names)
    evaluation = problem.evaluate_params(params, front=lambda: np.array([[100.0, 0.0, 0.0]]))
    record = TrialRecord.from_evaluation(evaluation)
    again = TrialRecord.from_user_attrs(record.to_user_attrs())
    assert again == record and again is not None and again.raced_out
    assert RaceRecord.from_dict(record.to_user_attrs()["race"]) == evaluation.race
    assert TrialRecord.from_evaluation(problem.baselines()["lop"]).race is None


# --------------------------------------------------------------------------- a study
def test_a_racing_study_keeps_raced_out_trials_off_the_front(bench: Workbench) -> None:
    settings = StudySettings.parse(
        model=MODEL, test_size=TEST_SIZE, racing=0.3, sampler="random", seed=0
    )
    problem = RobustnessProblem(settings, bench=bench)
    # 24 random trials: enough that some are beaten by the front whatever CPU trained the
    # model (its weights, and so which trials win, differ between CPU families); seeds 0-3
    # race out 2-6 of them here
    with prepare_study(settings, storage_url=":memory:", problem=problem) as prepared:
        result = run_study(prepared, trials=24)
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    assert len(trials) == 24 and all(r is not None and r.race for r in records.values())
    raced_out = {n for n, r in records.items() if r is not None and r.raced_out}
    assert raced_out, "some random trials are beaten by the front"
    assert raced_out.isdisjoint(t.number for t in result.front)
    front_values = racing_front(result.study)
    assert front_values.shape == (len(trials) - len(raced_out), 3)
