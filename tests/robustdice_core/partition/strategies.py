"""Hypothesis strategies shared by the partition tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist

from robustdice_core.partition import Clustering, DendrogramClustering, GreedyClustering

CLUSTERING_CLASSES: list[type[Clustering]] = [GreedyClustering, DendrogramClustering]

thresholds = st.floats(0.0, 2.0, allow_nan=False, allow_subnormal=False)
device_counts = st.integers(1, 6)


@st.composite
def point_clouds(draw: st.DrawFn, max_size: int = 60) -> np.ndarray:
    """Points in [0, 1]^d, d in 1..3; coarse values make ties and duplicates likely."""
    dims = draw(st.integers(1, 3))
    size = draw(st.one_of(st.integers(1, 6), st.integers(1, max_size)))
    fine = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)
    coarse = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
    elements = draw(st.sampled_from([fine, coarse]))
    return draw(arrays(np.float64, (size, dims), elements=elements))


@st.composite
def clouds_and_thresholds(draw: st.DrawFn, max_size: int = 60) -> tuple[np.ndarray, float]:
    """A cloud and a threshold in [0, 2], half the time strictly inside (0, diameter)."""
    points = draw(point_clouds(max_size))
    diameter = float(pdist(points).max()) if len(points) > 1 else 0.0
    if diameter > 0 and draw(st.booleans()):
        fraction = draw(st.floats(0.01, 0.99))
        return points, fraction * diameter
    return points, draw(thresholds)
