"""The import layers of pyproject.toml hold: a run's code flows down and never into `analysis`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is missing: pip install -e '.[dev]'"
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_run_starts_without_the_analysis() -> None:
    """A cron run imports neither the analysis nor pandas before it measures."""
    code = ("import sys, probe.runner, probe.experiments; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('analysis', 'pandas')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert res.stdout.strip() == "[]"
