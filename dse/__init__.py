"""The design-space exploration and the `dse` command line."""

from __future__ import annotations

from dse._compare import MethodResult, compare_methods
from dse._workbench import Workbench, open_workbench

__all__ = ["MethodResult", "Workbench", "compare_methods", "open_workbench"]
