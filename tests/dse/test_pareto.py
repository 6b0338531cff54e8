from __future__ import annotations

import itertools

import numpy as np
import pytest

from dse import ReferenceBox, hypervolume, pareto_mask


def _brute_force_front(points: np.ndarray) -> np.ndarray:
    keep = []
    for i, p in enumerate(points):
        dominated = any((q <= p).all() and (q < p).any() for j, q in enumerate(points) if j != i)
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(seed: int) -> None:
    points = np.random.default_rng(seed).integers(0, 5, size=(30, 3)).astype(float)
    assert (pareto_mask(points) == _brute_force_front(points)).all()


def test_pareto_mask_of_nothing() -> None:
    assert pareto_mask(np.zeros((0, 2))).size == 0


def test_reference_box_flips_maximised_objectives() -> None:
    box = ReferenceBox(ideal=(100.0, 1.0), nadir=(0.0, 3.0), maximize=(True, False))
    np.testing.assert_allclose(
        box.normalise(np.array([[100.0, 1.0], [0.0, 3.0], [50.0, 2.0]])),
        [[0, 0], [1, 1], [0.5, 0.5]],
    )
    assert ReferenceBox.from_dict(box.to_dict()) == box


def test_hypervolume_of_known_points() -> None:
    box = ReferenceBox(ideal=(0.0, 0.0), nadir=(1.0, 1.0), maximize=(False, False))
    assert hypervolume(np.array([[0.5, 0.5]]), box) == pytest.approx(0.25)
    # two points: union of two rectangles
    assert hypervolume(np.array([[0.25, 0.5], [0.5, 0.25]]), box) == pytest.approx(
        0.75 * 0.5 + 0.5 * 0.75 - 0.5 * 0.5
    )
    assert hypervolume(np.array([[2.0, 0.1]]), box) == 0.0  # outside the box
    assert hypervolume(np.zeros((0, 2)), box) == 0.0


def test_hypervolume_grows_with_dominating_points() -> None:
    box = ReferenceBox(ideal=(0.0,) * 3, nadir=(1.0,) * 3, maximize=(False,) * 3)
    grid = np.array(list(itertools.product([0.3, 0.6], repeat=3)))
    assert hypervolume(grid, box) >= hypervolume(grid[1:], box)
