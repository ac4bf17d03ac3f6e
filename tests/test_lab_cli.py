"""`probe lab` refuses cleanly (exit 2) where the lab cannot run; no root needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.lab import system
from probe.lab.cli import lab


@pytest.mark.parametrize("command", [["up"], ["status"], ["down"], ["scenario", "clean"],
                                     ["exec", "--", "true"]])
def test_not_root_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(lab, [*command[:1], "--dir", str(tmp_path), *command[1:]])
    assert result.exit_code == 2, result.output
    assert "root" in result.output
    assert not (tmp_path / "state.json").exists()


def test_missing_iptables_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_which = shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda t: None if "iptables" in t else real_which(t))
    result = CliRunner().invoke(lab, ["up", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert system.IPTABLES in result.output


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, ["scenario", "nonsense", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "sni-throttle" in result.output
