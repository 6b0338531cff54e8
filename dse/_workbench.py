"""Everything one model needs for evaluation, built once: traced network, data, scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robustdice_core import InvalidParameterError
from robustdice_core.failures import FailureEvaluator
from robustdice_core.importance import SCORERS, ImportanceScores, compute_scores
from robustdice_core.masking import MaskedNetwork
from robustdice_core.partition import CLUSTERINGS, RobustDiCE
from robustdice_core.units import TracedModel, trace_model
from robustdice_core.zoo import EvalData, LoadedModel, load_model

__all__ = ["Workbench", "open_workbench"]


@dataclass
class Workbench:
    """A loaded model with its masked network, scores and (when accuracy is needed) data."""

    model: LoadedModel
    traced: TracedModel
    net: MaskedNetwork
    scores: ImportanceScores
    score_names: tuple[str, ...]
    data: EvalData | None
    evaluator: FailureEvaluator | None
    notes: tuple[str, ...] = ()

    @property
    def unit_sizes(self) -> list[int]:
        return [u.num_neurons for u in self.net.units]

    def robustdice(self, clustering: str = "dendrogram") -> RobustDiCE:
        """A RobustDiCE partitioner over this model's normalised scores."""
        points = self.scores.points(self.score_names)
        return RobustDiCE(points, clustering=CLUSTERINGS.get(clustering)())

    def require_evaluator(self) -> FailureEvaluator:
        if self.evaluator is None:
            raise InvalidParameterError(f"accuracy of `{self.model.spec.name}` needs its data.")
        return self.evaluator

    def require_data(self) -> EvalData:
        if self.data is None:
            raise InvalidParameterError(f"`{self.model.spec.name}` was opened without data.")
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
) -> Workbench:
    """Load ``model`` with its weights and data, and compute (or load cached) scores.

    Without ``need_accuracy`` the model may have no weights and no data: it is then used for
    its architecture (costs) only, and clustered on the scores that need no data (s1).
    """
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
    net = MaskedNetwork(traced)
    calibration = eval_data.calibration if eval_data is not None else None
    scores = compute_scores(net, calibration, names, weights_hash=loaded.weights_hash())
    return Workbench(
        model=loaded,
        traced=traced,
        net=net,
        scores=scores,
        score_names=names,
        data=eval_data,
        evaluator=FailureEvaluator(net, eval_data.test) if eval_data is not None else None,
        notes=tuple(notes),
    )
