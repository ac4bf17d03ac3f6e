"""`probe schedule install` needs consent on record: scheduled runs cannot ask anyone."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import main


def test_install_fails_clearly_when_consent_cannot_be_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--yes whose record cannot be written would leave every scheduled run refusing to
    measure: install stops with 2 before touching the crontab."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PROBE_STATE_DIR", str(blocker / "state"))  # cannot be created
    res = CliRunner().invoke(main, ["schedule", "install", "--scheduler", "cron", "--every",
                                    "1h", "--yes", "--log-file", str(tmp_path / "p.log")])
    assert res.exit_code == 2, res.output
    assert "cannot record consent" in res.output
    assert isinstance(res.exception, SystemExit)
