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


@pytest.mark.parametrize("option", [["--loss", "150"], ["--buffer-ms", "-1"],
                                    ["--burst", "x"], ["--after-kb", "-5"]])
def test_zoo_knobs_out_of_range_are_usage_errors(tmp_path: Path, option: list) -> None:
    result = CliRunner().invoke(lab, ["scenario", "lossy", *option, "--dir", str(tmp_path)])
    assert result.exit_code == 2 and option[0] in result.output, result.output
    assert not (tmp_path / "state.json").exists()


def test_zoo_plans_use_the_kernel_parts_they_describe() -> None:
    from probe.lab.scenarios import FLOW_SLOTS, Tuning, plan

    police = plan("police", 128, "192.0.2.6", Tuning(burst_kb=8))
    assert police.tc.count("class add dev west parent 1: classid 1:40 htb rate 128kbit ceil "
                           "128kbit burst 8000 cburst 8000") == 1
    assert sum("pfifo limit 3" in line for line in police.tc) == 2 * FLOW_SLOTS
    assert police.iptables.count("--mode nth") == FLOW_SLOTS
    shape = plan("shape", 128, "192.0.2.6", Tuning(buffer_ms=1500))
    assert sum("bfifo limit 24000" in line for line in shape.tc) == 2 * FLOW_SLOTS
    deep = plan("shape-deep", 128, "192.0.2.6")
    assert sum("bfifo limit 160000" in line for line in deep.tc) == 2 * FLOW_SLOTS
    shared = plan("shared", 128, "192.0.2.6")
    assert "--set-class 1:10" in shared.iptables and "nth" not in shared.iptables
    late = plan("late", 128, "192.0.2.6", Tuning(after_kb=64))
    assert late.iptables.count("--connbytes 64000: --connbytes-dir both") == FLOW_SLOTS
    lossy = plan("lossy", 128, "192.0.2.6", Tuning(loss_pct=3))
    assert "--mode random --probability 0.0300 -j DROP" in lossy.iptables and not lossy.tc


def test_sni_scenarios_key_on_the_chosen_services_names() -> None:
    from probe.lab.scenarios import SNI_SCENARIOS, plan

    for name in SNI_SCENARIOS:
        twitter = plan(name, 128, "192.0.2.6").iptables
        youtube = plan(name, 128, "192.0.2.6", services=("youtube",)).iptables
        assert '--string ".twimg.com"' in twitter and '"|00 00 04|t.co"' in twitter, name
        assert ".twimg.com" not in youtube and "t.co" not in youtube, name
        for domain in (".ytimg.com", ".youtube.com", ".googlevideo.com"):
            assert f'--string "{domain}"' in youtube, (name, domain)
    both = plan("sni-throttle", 128, "192.0.2.6", services=("twitter", "youtube")).iptables
    assert ".twimg.com" in both and ".googlevideo.com" in both


def test_a_service_without_lab_hosts_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, ["scenario", "sni-throttle", "--service", "facebook",
                                      "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--service" in result.output, result.output


def test_quic_scenarios_leave_tcp_alone_and_key_on_the_services() -> None:
    from probe.lab.scenarios import QUIC_QUEUE, QUIC_SCENARIOS, plan

    for name in QUIC_SCENARIOS:
        p = plan(name, 512, "192.0.2.6", services=("youtube",))
        rules = [r for r in p.iptables.splitlines() if r.startswith("-A")]
        assert rules and "-p tcp" not in p.iptables and "--string" not in p.iptables, name
        if name.endswith("-name"):  # the classifier decides, the kernel keeps its mark
            assert "ytimg.com" in p.quic_domains and "twimg.com" not in p.quic_domains
            assert (f"-p udp --dport 443 -m connmark --mark 0x0 -m connbytes --connbytes 0:4 "
                    f"--connbytes-dir original --connbytes-mode packets -j NFQUEUE --queue-num "
                    f"{QUIC_QUEUE} --queue-bypass") in p.iptables
        else:
            assert not p.quic_domains and "203.0.113.20 --dport 443" in p.iptables
            assert "203.0.113.10" not in p.iptables  # a Twitter host: not YouTube's
        throttle = name.startswith("quic-throttle")
        assert ("-j DROP" in p.iptables) != throttle, name
        assert any("rate 512kbit ceil" in line for line in p.tc) == throttle, name
