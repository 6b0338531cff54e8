"""`tiered` in `dse evaluate --replication` (dse/_compare.py): matched memory, the split chosen
on the calibration images only."""

from __future__ import annotations

from typing import Any

import pytest

from dse import Workbench, open_workbench
from dse._compare import compare_methods
from robustdice_core import InvalidParameterError
from robustdice_core.failures import FailureEvaluator
from robustdice_core.partition import DEFAULT_SHARES
from robustdice_core.zoo import LabelledImages

TEST_SIZE = 100


@pytest.fixture(scope="module")
def bench() -> Workbench:
    return open_workbench("digits-vgg-bn", test_size=TEST_SIZE)


def test_tiered_is_matched_and_searched_on_calibration_images(
    bench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bench.require_data()
    bench._evaluator = None  # built again below, through the recording `evaluator_for`
    calls: dict[str, int] = {"calibration": 0, "test": 0}
    original = bench.evaluator_for

    def recording(images: LabelledImages) -> FailureEvaluator:
        name = "calibration" if images is data.calibration else "test"
        assert images is data.calibration or images is data.test
        evaluator = original(images)
        evaluate = evaluator.evaluate

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return evaluate(*args, **kwargs)

        monkeypatch.setattr(evaluator, "evaluate", counted)
        return evaluator

    monkeypatch.setattr(bench, "evaluator_for", recording)
    (result,) = compare_methods(bench, 4, replication=1.5, methods=["tiered"], failures=[1, 2])
    # every candidate split on the calibration images, the chosen one once on the test images
    assert calls["test"] == 1
    assert 2 <= calls["calibration"] <= len(DEFAULT_SHARES)
    total = sum(bench.unit_sizes)
    assert result.replication_factor == pytest.approx(1.5, abs=1 / (2 * total))
    assert result.target == 1.5
    options = dict(result.partition.options)
    assert options["copies"] == "3,2" and options["allocation"] == "model-wide"
    assert float(options["share"]) in DEFAULT_SHARES
    candidates = dict(pair.split(":") for pair in options["searched"].split())
    assert [float(s) for s in candidates] == list(DEFAULT_SHARES)
    assert float(candidates[options["share"]]) == max(float(v) for v in candidates.values())


@pytest.mark.parametrize(
    ("devices", "replication", "message"),
    [(2, 1.5, "at least 3 devices"), (4, 3.5, "more than tiered's 3 copies")],
)
def test_tiered_requests_it_cannot_meet_are_refused(
    bench: Workbench, devices: int, replication: float, message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        compare_methods(bench, devices, replication=replication, methods=["tiered"])


def test_graded_is_matched_to_the_replication_target(bench: Workbench) -> None:
    (graded,) = compare_methods(bench, 4, replication=2.5, methods=["graded"], failures=[0, 1])
    assert graded.target == 2.5
    assert graded.replication_factor == pytest.approx(2.5, abs=0.05)
    assert graded.partition.method == "graded"
    # two copies of every neuron: no single failure loses anything
    assert graded.accuracy.by_size(1).worst == graded.accuracy.by_size(0).worst
