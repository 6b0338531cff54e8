"""Training and scoring a study's models ahead of its evaluation, several at a time.

From a fresh clone most of a multi-seed study is spent training the embedded models (one
thread each, for reproducible weights) and computing their s3 scores. Both land in the
on-disk cache, so worker processes can fill it in parallel and the study then opens every
model from the cache. Workers run torch on one thread each: two workers use two cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from robustdice_core.zoo import MODELS
from studies._bench import open_run
from studies._kinds import Progress
from studies._plan import ModelRun
from studies._spec import StudySpec

__all__ = ["default_jobs", "prepare_runs"]


def default_jobs() -> int:
    """One worker per core, at most 4 (the models are small; memory is not the limit)."""
    return max(1, min(os.cpu_count() or 1, 4))


def prepare_runs(
    runs: Sequence[ModelRun],
    spec: StudySpec,
    scores: Sequence[str],
    progress: Progress,
    *,
    jobs: int,
    need: Callable[[ModelRun], bool] | None = None,
    ready: Callable[[ModelRun], bool] | None = None,
) -> None:
    """Fill the cache with every run's trained weights and ``scores``, ``jobs`` at a time
    (``need(run)``: whether the study opens the run with its data; ``ready(run)``: whether
    its weights are here already, by default `ModelSpec.weights_ready`).

    Only runs whose weights are not on this machine yet are prepared here (the study scores
    the others itself, quickly where their scores are cached too), and runs without data
    (architecture only: nothing to train, s1 alone) are left to the study. With one job, or
    fewer than two runs to prepare, nothing happens here.
    """
    is_ready = ready or _weights_here
    todo = [run for run in runs if (need is None or need(run)) and not is_ready(run)]
    if jobs <= 1 or len(todo) <= 1:
        return
    workers = min(jobs, len(todo))
    progress(f"training and scoring {len(todo)} models, {workers} at a time")
    context = multiprocessing.get_context("spawn")  # no forked torch state
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(_warm, run, spec, tuple(scores)): run for run in todo}
        for done in as_completed(futures):
            if done.exception() is not None:  # e.g. a RobustDiceError: stop, raise it here
                pool.shutdown(wait=True, cancel_futures=True)
                done.result()
            progress(f"{futures[done].name}: weights and scores cached")


def _weights_here(run: ModelRun) -> bool:
    return run.weights is not None or MODELS.get(run.name).weights_ready()


def _one_thread() -> None:
    torch.set_num_threads(1)


def _warm(run: ModelRun, spec: StudySpec, scores: tuple[str, ...]) -> None:
    open_run(run, spec, scores)
