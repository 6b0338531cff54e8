"""The timeout study drawn: latency and Top-1 against the timeout (log x), and a
self-contained HTML page (plotly.js inlined, opens offline)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dse._timeout_study import TimeoutPoint, TimeoutStudy
from robustdice_core.io import atomic_write_bytes

__all__ = [
    "describe_link",
    "figure_title",
    "study_settings",
    "timeout_figure",
    "timeout_page",
    "write_timeout_page",
]

BLUE, RED, GREY, GREEN = "#1f63b4", "#c0392b", "#7f8c8d", "#1e7a34"


def timeout_figure(
    baseline: TimeoutPoint,
    points: Sequence[TimeoutPoint],
    *,
    title: str,
    paper_ms: Mapping[float, float] | None = None,
) -> go.Figure:
    """Latency per image (top) and Top-1 (bottom) against the timeout in us, the no-failure
    ``baseline`` as dashed lines.

    ``paper_ms``: the paper's latency (ms) at some timeouts (s), drawn as markers."""
    x = [p.timeout_s * 1e6 for p in points]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.07
    )
    lines = (
        ("p50", [p.latency_p50_ms for p in points], "solid"),
        ("p90", [p.latency_p90_ms for p in points], "dash"),
        ("max", [p.latency_max_ms for p in points], "dot"),
    )
    for name, ys, dash in lines:
        fig.add_trace(_line(x, ys, f"1 failed: {name} latency", BLUE, dash), row=1, col=1)
    base = baseline
    # a trace, not add_hline: hline annotations land off the chart on a log axis
    span = [min(x, default=1.0), max(x, default=1.0)]
    fig.add_trace(
        go.Scatter(
            x=span, y=[base.latency_p50_ms] * 2, mode="lines", line={"color": RED, "dash": "dash"},
            name=f"no failure: p50 latency {base.latency_p50_ms:.1f} ms",
        ),
        row=1, col=1,
    )  # fmt: skip
    if paper_ms:
        fig.add_trace(
            go.Scatter(
                x=[t * 1e6 for t in paper_ms], y=list(paper_ms.values()), mode="markers",
                name="paper (VGG16-BN, Jetson)", marker={"symbol": "star", "size": 12,
                                                         "color": "black"},
            ),
            row=1, col=1,
        )  # fmt: skip
    tops = (
        ("measured Top-1", [p.top1_pct for p in points], BLUE, "solid"),
        ("simulated Top-1, same failure", [p.simulated_top1_pct for p in points], GREEN,
         "dash"),
    )  # fmt: skip
    for name, ys, color, dash in tops:
        fig.add_trace(_line(x, ys, name, color, dash), row=2, col=1)
    fig.add_hline(
        y=base.top1_pct, line={"color": RED, "dash": "dash"}, row=2, col=1,
        annotation_text=f"no failure {base.top1_pct:.1f} %", annotation_position="bottom left",
    )  # fmt: skip
    fig.update_xaxes(type="log", title_text="timeout (us), log scale", row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    # log: the medians (ms) and the worst images (seconds, when nobody admitted an image)
    fig.update_yaxes(title_text="latency per image (ms), log scale", type="log", row=1, col=1)
    fig.update_yaxes(title_text="Top-1 (%)", range=[0, 100], row=2, col=1)
    fig.update_layout(
        title=title,
        height=620,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
    )
    return fig


def _line(x: list[float], ys: list[float], name: str, color: str, dash: str) -> go.Scatter:
    clean = [None if math.isnan(y) else y for y in ys]
    return go.Scatter(
        x=x, y=clean, mode="lines+markers", name=name, line={"color": color, "dash": dash}
    )


def figure_title(study: TimeoutStudy) -> str:
    return (
        f"{study.model} ({study.method}, {study.num_devices} nodes): node {study.failed} "
        f"killed at image {study.fail_at}; link: {describe_link(study.link)}"
    )


def describe_link(name: str) -> str:
    """A run's link as a reader needs it (``none``: nothing emulated)."""
    return "none (plain loopback, no emulation)" if name == "none" else f"{name} (emulated)"


def study_settings(study: TimeoutStudy) -> list[str]:
    """What was run, one line each (the page's and the CLI's account)."""
    base = study.baseline
    return [
        f"bundle {study.bundle}: {study.model}, {study.method} on {study.num_devices} local "
        "node processes",
        f"link: {describe_link(study.link)}",
        f"failure: node {study.failed} SIGKILLed just before image {study.fail_at} of "
        f"{study.images}; figures cover images {study.fail_at}..{study.images - 1}",
        f"heartbeat interval = timeout / {study.heartbeat_divisor:g}; the same timeout ends "
        "a sync's wait for a silent peer (once per image) and marks a silent peer down",
        f"no failure: the same images at the bundle's timings (timeout {base.timeout_s:g} s, "
        f"heartbeat {base.heartbeat_s:g} s)",
        f"{study.in_flight} image(s) in flight; latency = send to first answer",
    ]


def timeout_page(study: TimeoutStudy) -> str:
    """The figure, the settings and the table, as one HTML document."""
    figure = timeout_figure(study.baseline, study.points, title=figure_title(study)).to_html(
        full_html=False, include_plotlyjs=True, config={"displaylogo": False}
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in study_settings(study))
    table = pd.DataFrame(study.rows()).to_html(
        index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0
    )
    title = html.escape(f"Timeout study: {study.model} on {study.num_devices} nodes")
    return _PAGE.format(title=title, items=items, figure=figure, table=table)


def write_timeout_page(study: TimeoutStudy, path: Path | str) -> Path:
    atomic_write_bytes(Path(path), timeout_page(study).encode("utf-8"))
    return Path(path)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 16px 24px; color: #1b1f24; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ padding: 3px 8px; border-top: 1px solid #eef0f2; text-align: right; }}
.scroll {{ overflow-x: auto; }}
</style></head>
<body>
<h1>{title}</h1>
<ul>{items}</ul>
{figure}
<div class="scroll">{table}</div>
</body>
</html>
"""
