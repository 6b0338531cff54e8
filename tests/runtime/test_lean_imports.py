"""A board installs the runtime without the search stack (DESIGN 2)."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_and_bundles_import_no_search_or_report_stack() -> None:
    code = (
        "import sys, runtime, robustdice_core.bundle; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'optuna', 'pymoo', 'pandas', 'plotly', 'dse', 'reports'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
