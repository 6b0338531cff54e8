"""Per-trial figures are one figure plus a patch per trial: the page swaps patches in with
``Plotly.react`` instead of holding a whole figure for every trial.

A patch is plain JSON: ``{"traces": {"<index>": {attribute: value}}, "layout": {...}}``;
nested dicts merge into the figure's, lists and scalars replace. The figure functions build
their figure from the same patch, so the page and a static export show the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

__all__ = ["Patch", "apply_patch", "jsonable", "patch"]

Patch = dict[str, Any]


def patch(traces: Mapping[int, Mapping[str, Any]], layout: Mapping[str, Any]) -> Patch:
    """A patch from trace updates (by trace index) and a layout update."""
    return {"traces": {str(i): dict(t) for i, t in traces.items()}, "layout": dict(layout)}


def apply_patch(fig: go.Figure, update: Patch) -> go.Figure:
    """Apply ``update`` to ``fig`` in place, as the page does; return ``fig``."""
    for index, trace in update["traces"].items():
        fig.data[int(index)].update(trace)
    fig.update_layout(update["layout"])
    return fig


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null (JavaScript's JSON.parse and
    Plotly's gaps both want null), numpy scalars and arrays (``tolist``) Python ones."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()  # numpy, without importing it: pandas hands these out
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
