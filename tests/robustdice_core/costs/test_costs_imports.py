"""The cost model depends on partitions and traced units only, never on the model zoo, the
importance scores or the studies (issue 12 moved the Table 2 script out for this)."""

from __future__ import annotations

import ast
from pathlib import Path

import robustdice_core.costs

ALLOWED = ("robustdice_core._errors", "robustdice_core._registry", "robustdice_core.costs")
ALLOWED_PACKAGES = ("robustdice_core.partition", "robustdice_core.units")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_cost_model_imports_no_zoo_scores_or_studies() -> None:
    folder = Path(robustdice_core.costs.__file__).parent
    ours = {
        name
        for path in folder.glob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in {"robustdice_core", "studies", "dse"}
    }
    assert ours, "the cost model imports something of ours"
    outside = {
        name
        for name in ours
        if not name.startswith(ALLOWED) and not name.startswith(ALLOWED_PACKAGES)
    }
    assert not outside, f"the cost model imports {sorted(outside)}"
