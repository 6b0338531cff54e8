"""What one run of a study covers: the user's overrides checked against the spec, and the
list of (model, training seed) runs they give."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from robustdice_core import InvalidParameterError
from robustdice_core.zoo import MODELS, seeded_name, split_seed
from studies._spec import StudySpec, check_seeds

__all__ = ["ModelRun", "StudyRequest", "plan_runs"]

S = TypeVar("S", bound=StudySpec)


@dataclass(frozen=True)
class StudyRequest:
    """A user's overrides of a spec (None: the spec's own).

    Attributes:
        models: registered model names; a name with ``@seedN`` is that one training.
        seeds: training seeds of the embedded models.
        weights: a local state dict for the (single) model.
        data: an ImageNet-style folder for torchvision models.
        calibration_size, test_size: images (None: the spec's).
    """

    models: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    weights: Path | None = None
    data: Path | None = None
    calibration_size: int | None = None
    test_size: int | None = None

    def __post_init__(self) -> None:
        if self.models is not None and not self.models:
            raise InvalidParameterError("`--model` must name at least one model.")
        if self.seeds is not None:
            check_seeds(self.seeds, "--seeds")
        for flag, size in (
            ("--calibration-size", self.calibration_size),
            ("--test-size", self.test_size),
        ):
            if size is not None and size < 1:
                raise InvalidParameterError(f"`{flag}` must be at least 1, got {size}.")

    def applied_to(self, spec: S) -> S:
        """``spec`` with this request's image counts."""
        return replace(
            spec,
            calibration_size=self.calibration_size or spec.calibration_size,
            test_size=self.test_size or spec.test_size,
        )


@dataclass(frozen=True)
class ModelRun:
    """One trained model a study evaluates."""

    model: str  # the model as the study reports it (seed suffix removed)
    seed: int
    name: str  # registry name, e.g. digits-vgg-bn@seed1
    weights: Path | None = None
    data: Path | None = None


def plan_runs(spec: StudySpec, request: StudyRequest) -> tuple[ModelRun, ...]:
    """Every (model, seed) the study runs, checked before any work starts.

    Raises:
        InvalidParameterError / UnknownNameError: a model, seed, weights or data choice that
            cannot work, with the flag to change.
    """
    models = request.models if request.models is not None else spec.models
    if request.weights is not None and len(models) != 1:
        raise InvalidParameterError(
            f"`--weights` is one model's file but the study runs {len(models)} models "
            f"({', '.join(models)}); name that model with `--model`."
        )
    runs = [run for model in models for run in _model_runs(model, spec, request)]
    names = [run.name for run in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidParameterError(f"`--model` runs `{repeated[0]}` twice; name each once.")
    return tuple(runs)


def _model_runs(model: str, spec: StudySpec, request: StudyRequest) -> list[ModelRun]:
    parsed = split_seed(model)
    base_spec = MODELS.get(model)  # unknown names and bad suffixes fail here
    if request.data is not None and base_spec.embedded:
        raise InvalidParameterError(
            f"`--data` is for ImageNet models; `{model}` uses the embedded digits set."
        )
    if parsed.seed is not None:
        if request.seeds is not None:
            raise InvalidParameterError(
                f"`--model {model}` already names a training seed; leave out `--seeds`."
            )
        seeds: tuple[int, ...] = (parsed.seed,)
    elif request.seeds is not None:
        seeds = request.seeds
        if not base_spec.embedded and seeds != (0,):
            raise InvalidParameterError(
                f"`--seeds` are training seeds of the embedded models; `{model}` has one set "
                "of weights (published, or `--weights PATH`): leave out `--seeds`."
            )
    elif base_spec.embedded and request.weights is None:
        seeds = spec.seeds
    else:
        seeds = (0,)  # one set of weights: published, or the user's file
    if request.weights is not None and seeds != (0,):
        raise InvalidParameterError(
            "`--weights` replaces the trained weights, so training seeds do not apply; "
            "leave out `--seeds`."
        )
    runs = []
    for seed in seeds:
        name = seeded_name(parsed.base, seed)
        MODELS.get(name)  # a torchvision model with a seed > 0 fails here, by name
        runs.append(ModelRun(parsed.base, seed, name, request.weights, request.data))
    return runs
