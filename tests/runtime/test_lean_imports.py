"""A board installs the runtime without the search stack (DESIGN 2): a node imports only what
`requirements-node.txt` lists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"optuna", "pymoo", "pandas", "plotly", "dse", "reports", "studies", "sklearn", "typer"}


def _imported_by(modules: str) -> set[str]:
    names = "sorted({m.split('.')[0] for m in sys.modules})"
    code = f"import sys, json, {modules}; print(json.dumps({names}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_runtime_and_bundles_import_no_search_or_report_stack() -> None:
    assert _imported_by("runtime, robustdice_core.bundle") & HEAVY == set()


def test_a_node_imports_only_what_requirements_node_lists() -> None:
    from importlib.metadata import packages_distributions

    imported = _imported_by("runtime._node, runtime._cli")
    assert imported & HEAVY == set()
    distributions = packages_distributions()
    third_party = {
        dist.lower().replace("_", "-")
        for module in imported - set(sys.stdlib_module_names) - {"robustdice_core", "runtime"}
        for dist in distributions.get(module, [])
    }
    listed = {
        re.split(r"[<>=\s]", line)[0].lower()
        for line in (REPO / "requirements-node.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = third_party - _with_dependencies(listed)
    assert missing == set(), f"a node imports {sorted(missing)}: add to requirements-node.txt"


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and everything they require, transitively (torch brings its own)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [re.split(r"[<>=!~;\[\s(]", r)[0].lower().replace("_", "-") for r in needs]
    return seen
