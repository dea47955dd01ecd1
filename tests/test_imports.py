"""The core imports without torch; the CLI and the search/analysis packages stay light."""

from __future__ import annotations

import subprocess
import sys


def test_core_and_cli_import_without_torch() -> None:
    code = (
        "import sys, einspace, einspace.cli, search, analysis; "
        "heavy = [m for m in ('torch', 'matplotlib', 'optuna') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_works_when_torch_is_unavailable() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; "
        "import einspace; s = einspace.Structure.named('btt'); "
        "print(s.realize(64, 64).params)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(einspace_params())


def einspace_params() -> int:
    from einspace import Structure

    return Structure.named("btt").realize(64, 64).params


def test_execution_plan_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from einspace import Structure; from einspace.plan import ExecutionPlan; "
        "plan = ExecutionPlan.compile(Structure.named('monarch').realize(16, 16)); "
        "print(type(plan).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ExecutionPlan"
