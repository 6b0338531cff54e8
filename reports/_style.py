"""One look for every figure: colours, titles with a provenance subtitle, legend placement."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BASELINE_COLORS",
    "DOMINATED_OPACITY",
    "FRONT_COLOR",
    "INFEASIBLE_COLOR",
    "PLOT_CONFIG",
    "SELECTED_NAME",
    "TRIAL_COLOR",
    "base_layout",
    "baseline_color",
    "title",
    "wrap",
]

FRONT_COLOR = "#1f63b4"
TRIAL_COLOR = FRONT_COLOR
INFEASIBLE_COLOR = "#8c8c8c"
DOMINATED_OPACITY = 0.28
SELECTED_NAME = "selected trial"  # the page finds the highlight trace by this name
BASELINE_COLORS = {"lop": "#d62728", "cdc": "#ff8c1a", "replication": "#2ca02c"}
_OTHER_BASELINE = "#9467bd"
PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


def baseline_color(method: str) -> str:
    """The colour of a baseline, by registry name."""
    return BASELINE_COLORS.get(method, _OTHER_BASELINE)


def title(text: str, subtitle: str = "", *, width: int = 100) -> dict[str, Any]:
    """A figure title with the provenance line(s) under it, wrapped at ``width`` characters
    (plotly does not wrap text by itself)."""
    spec: dict[str, Any] = {
        "text": text,
        "x": 0.01,
        "xanchor": "left",
        "yref": "container",
        "y": 1.0,
        "yanchor": "top",
        "pad": {"t": 14},
        "font": {"size": 16},
    }
    if subtitle:
        lines = wrap(subtitle, width)
        spec["subtitle"] = {"text": "<br>".join(lines), "font": {"size": 11, "color": "#555"}}
    return spec


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` characters, broken after `` · `` where possible, else at
    spaces (a single longer word stays whole)."""
    lines: list[str] = []
    for part in text.split(" · "):
        joined = f"{lines[-1]} · {part}" if lines else part
        if lines and len(joined) <= width:
            lines[-1] = joined
            continue
        lines.extend(_wrap_words(part, width))
    return lines


def _wrap_words(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def base_layout(title_spec: dict[str, Any], *, height: int = 420) -> dict[str, Any]:
    """Title on top (room for its subtitle lines), legend in one row under the plot."""
    subtitle = title_spec.get("subtitle", {}).get("text", "")
    lines = subtitle.count("<br>") + 1 if subtitle else 0
    return {
        "title": title_spec,
        "height": height + 16 * lines,
        "template": "plotly_white",
        "margin": {"l": 70, "r": 20, "t": 56 + 16 * lines, "b": 60},
        "legend": {
            "orientation": "h",
            "yanchor": "top",
            "y": -0.16,
            "x": 0.0,
            "xanchor": "left",
            "font": {"size": 11},
        },
        "hoverlabel": {"namelength": -1},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"},
    }
