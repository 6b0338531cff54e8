"""Everything one model needs for evaluation, built once: traced network, data, scores.

The masked network lives on the chosen device (`--device`); the importance scores and every
failure evaluation run there. The model itself (`LoadedModel.module`, used for costs, weights
hashes and deployment) stays on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustdice_core import InvalidParameterError
from robustdice_core._device import ComputeDevice, check_batch_size, module_device
from robustdice_core.failures import FailureEvaluator
from robustdice_core.importance import (
    SCORERS,
    DivergenceScorer,
    ImportanceScorer,
    ImportanceScores,
    compute_scores,
)
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CLUSTERINGS, RobustDiCE
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import EvalData, LabelledImages, LoadedModel, load_model

__all__ = ["Workbench", "open_workbench"]


@dataclass
class Workbench:
    """A loaded model with its masked network, scores and (when accuracy is needed) data.

    ``batch_size`` (None: from the device's memory) sizes every batched forward of the
    evaluators it makes.
    """

    model: LoadedModel
    traced: TracedModel
    net: MaskedNetwork
    scores: ImportanceScores
    score_names: tuple[str, ...]
    data: EvalData | None
    notes: tuple[str, ...] = ()
    batch_size: int | None = None
    _evaluator: FailureEvaluator | None = field(default=None, init=False, repr=False)

    @property
    def unit_sizes(self) -> list[int]:
        return [u.num_neurons for u in self.net.units]

    @property
    def device(self) -> torch.device:
        return module_device(self.net)

    def robustdice(self, clustering: str = "dendrogram") -> RobustDiCE:
        """A RobustDiCE partitioner over this model's normalised scores."""
        points = self.scores.points(self.score_names)
        return RobustDiCE(points, clustering=CLUSTERINGS.get(clustering)())

    def require_evaluator(self) -> FailureEvaluator:
        """The evaluator on the whole test set, built on first use."""
        if self._evaluator is None:
            self._evaluator = self.evaluator_for(self.require_data().test)
        return self._evaluator

    def evaluator_for(self, images: LabelledImages) -> FailureEvaluator:
        """A failure evaluator of this model on ``images`` (e.g. a part of the test set)."""
        return FailureEvaluator(self.net, images, batch_size=self.batch_size)

    def require_data(self) -> EvalData:
        if self.data is None:
            raise InvalidParameterError(
                f"accuracy of `{self.model.spec.name}` needs its data; it was opened without."
            )
        return self.data


def open_workbench(
    model: str,
    *,
    weights: Path | None = None,
    data: Path | None = None,
    score_names: Sequence[str] | str = ("s1", "s2", "s3"),
    calibration_size: int | None = None,
    test_size: int | None = None,
    need_accuracy: bool = True,
    device: ComputeDevice | str = "auto",
    batch_size: int | None = None,
) -> Workbench:
    """Load ``model`` with its weights and data, and compute (or load cached) scores.

    Without ``need_accuracy`` the model may have no weights and no data: it is then used for
    its architecture (costs) only, and clustered on the scores that need no data (s1).
    Scores and evaluations run on ``device``; ``batch_size`` fixes the samples per batched
    forward of s3 and of failure evaluation (None: from the device's memory).
    """
    target = ComputeDevice.parse(device).resolve()
    check_batch_size(batch_size)
    names = SCORERS.parse_list(score_names, "--scores")
    notes: list[str] = []
    loaded = load_model(model, weights=weights, require_weights=need_accuracy)
    eval_data: EvalData | None = None
    if need_accuracy:
        eval_data = loaded.spec.eval_data(
            data, calibration_size=calibration_size, test_size=test_size
        )
    else:
        data_free = tuple(n for n in names if not SCORERS.get(n).needs_data) or ("s1",)
        if data_free != names:
            notes.append(f"no accuracy objective: clustering on {','.join(data_free)} only")
        names = data_free
    if not loaded.has_weights:
        notes.append("architecture only: no weights found, costs use seeded random weights")
    traced = trace_model(loaded.module, loaded.spec.input_shape, name=loaded.spec.name)
    net = MaskedNetwork(traced).to(target)
    calibration = eval_data.calibration if eval_data is not None else None
    scorers: dict[str, ImportanceScorer] = {"s3": DivergenceScorer(batch_size=batch_size)}
    scores = compute_scores(
        net, calibration, names, weights_hash=loaded.weights_hash(), scorers=scorers
    )
    return Workbench(
        model=loaded,
        traced=traced,
        net=net,
        scores=scores,
        score_names=names,
        data=eval_data,
        notes=tuple(notes),
        batch_size=batch_size,
    )
