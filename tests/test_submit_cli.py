"""`probe submit` as a volunteer meets it: consent to upload, what is refused, the
config file, proxies, and `probe run --submit`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from probe.collection import client, submit_cli, upload_consent
from probe.collection import submit as submit_mod
from probe.collection.submit_cli import submit
from tests.probe_world import PROBE, run_probe, targets
from tests.servers.collector import Collector
from tests.servers.socks import Socks5
from tests.submit_runs import make_run


@pytest.fixture(autouse=True)
def fast_and_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(client, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    state = tmp_path / "state"
    monkeypatch.setenv("PROBE_STATE_DIR", str(state))
    return state


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(submit, list(args))
    return result.exit_code, result.output


def test_without_a_terminal_and_without_consent_nothing_is_sent(tmp_path: Path) -> None:
    run = make_run(tmp_path, 2)
    with Collector() as c:
        code, out = _invoke(str(run), "--collector", c.url)
        assert code == 2 and not c.requests
        assert "no consent to upload on record" in out and "--yes" in out
        assert f"Where: {c.url}" in out and "2 measurement(s) of 1 run(s)" in out
        assert "sees this computer's public IP address" in out and "Not encrypted" in out
        assert not upload_consent.path().exists()


@pytest.mark.parametrize("answer, code, sent", [("n", 2, 0), ("y", 0, 1)])
def test_at_a_terminal_the_volunteer_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              answer: str, code: int, sent: int) -> None:
    monkeypatch.setattr(submit_cli, "at_terminal", lambda: True)
    run = make_run(tmp_path, 1)
    with Collector() as c:
        result = CliRunner().invoke(submit, [str(run), "--collector", c.url], input=answer)
        assert result.exit_code == code, result.output
        assert f"Where: {c.url}" in result.output and "Send now?" in result.output
        assert len(c.stored()) == sent
    assert (upload_consent.on_record(c.url) or {}).get("how") == ("prompt" if sent else None)


def test_yes_is_recorded_per_collector(tmp_path: Path) -> None:
    run, other = make_run(tmp_path / "a", 1), make_run(tmp_path / "b", 1)
    with Collector() as c, Collector() as d:
        assert _invoke(str(run), "--collector", c.url, "--yes")[0] == 0
        record = json.loads(upload_consent.path().read_text())
        assert record["collectors"][c.url]["how"] == "--yes"
        assert _invoke(str(other), "--collector", c.url)[0] == 0  # on record now
        assert len(c.stored()) == 2
        code, out = _invoke(str(other), "--collector", d.url)  # another collector: asked
        assert code == 2 and not d.requests


def test_a_run_in_progress_is_refused_when_named_and_skipped_in_a_results_folder(
        tmp_path: Path) -> None:
    results = tmp_path / "results"
    running, done = make_run(results, 1, status="running"), make_run(results, 1)
    with Collector() as c:
        code, out = _invoke(str(running), "--collector", c.url, "--yes")
        assert code == 2 and f"{running}: refused, still running" in out
        assert not c.requests
        code, out = _invoke(str(results), "--collector", c.url, "--yes")
        assert code == 0 and f"{running}: skipped, still running" in out
        assert [m["annotations"]["run_id"] for m in c.stored()] == [done.name]


def test_runs_not_scrubbed_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unmarked = make_run(tmp_path / "a", 1, scrubbed=None)
    monkeypatch.setattr(submit_mod, "local_addresses", lambda: {"192.0.2.55"})
    leaky = make_run(tmp_path / "b", 2, text="answer from 192.0.2.55")
    clean = make_run(tmp_path / "c", 1, text="answer from 192.0.2.56")
    with Collector() as c:
        code, out = _invoke(str(unmarked), str(leaky), str(clean), "--collector", c.url,
                            "--yes")
        assert code == 2
        assert f"{unmarked}: refused, run.json does not say its files were scrubbed" in out
        assert (f"{leaky}: refused, not scrubbed: {leaky}/measurements.jsonl:1: holds an "
                "address of this machine") in out
        assert [m["annotations"]["run_id"] for m in c.stored()] == [clean.name]


def test_the_config_file_names_the_default_collector(tmp_path: Path,
                                                     fast_and_private: Path) -> None:
    run = make_run(tmp_path, 1)
    code, out = _invoke(str(run), "--yes")
    assert code == 2 and "no collector: pass --collector URL" in out
    with Collector() as c:
        fast_and_private.mkdir(parents=True, exist_ok=True)
        (fast_and_private / "config.toml").write_text(f'[submit]\ncollector = "{c.url}/"\n')
        code, out = _invoke(str(run), "--yes")
        assert code == 0, out
        assert len(c.stored()) == 1


@pytest.mark.parametrize("args, message", [
    (["--collector", "ftp://x"], "expected an https:// (or http://) URL"),
    (["--collector", "http://127.0.0.1:9", "--proxy", "ftp://x:1"], "expected socks5://"),
])
def test_bad_urls_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, out = _invoke(str(make_run(tmp_path, 1)), *args, "--yes")
    assert code == 2 and message in out


def test_the_proxy_reaches_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    real = httpx.Client

    def spy(**kwargs: object) -> httpx.Client:
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(client.httpx, "Client", spy)
    with client.Collector("https://c.example", proxy="http://127.0.0.1:3128"):
        assert seen["proxy"] == "http://127.0.0.1:3128"


def test_through_a_socks5_proxy(tmp_path: Path) -> None:
    pytest.importorskip("socksio")
    run = make_run(tmp_path, 2)
    with Collector() as c, Socks5() as proxy:
        url = f"http://localhost:{c.port}"
        code, out = _invoke(str(run), "--collector", url, "--proxy", proxy.url, "--yes")
        assert code == 0, out
        assert len(c.stored()) == 2
        assert set(proxy.targets) == {("localhost", c.port)}  # the proxy resolves the name


RUN_TARGETS = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes/20000"
family = "twitter"
kind = "image"
"""


def test_probe_run_submit_sends_the_run_just_made(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "results"
    with Collector() as c:
        res = run_probe(world, targets(world, RUN_TARGETS), out, "--quiet", "--submit",
                        "--collector", c.url)
        assert res.returncode == 0, res.stderr
        folder = Path(res.stdout.strip().splitlines()[-1])
        assert "1 of 1 sent" in res.stderr
        assert [m["annotations"]["run_id"] for m in c.stored()] == [folder.name]
    env = {**os.environ, "PROBE_STATE_DIR": str(tmp_path / "empty-state")}
    res = subprocess.run([*PROBE, "run", "--yes", "--submit", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "no collector" in res.stderr
    assert not (tmp_path / "x").exists()  # refused before measuring
    res = subprocess.run([*PROBE, "run", "--collector", "http://c.example", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "add --submit" in res.stderr


def test_scheduled_args_settle_the_collector_and_consent_at_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit_cli, "at_terminal", lambda: False)
    with pytest.raises(click.UsageError, match="no collector"):
        submit_cli.scheduled_args(None, yes=True)
    with pytest.raises(click.UsageError, match="no consent to upload on record"):
        submit_cli.scheduled_args("https://c.example", yes=False)
    assert submit_cli.scheduled_args("https://c.example/", yes=True) == [
        "--submit", "--collector", "https://c.example"]
    assert upload_consent.on_record("https://c.example")["how"] == "--yes"


def test_schedule_install_submit_puts_the_collector_in_the_scheduled_run() -> None:
    from probe.cli import main

    res = CliRunner().invoke(main, ["schedule", "install", "--every", "1h", "--scheduler",
                                    "cron", "--submit", "--collector", "https://c.example",
                                    "--yes", "--dry-run", "--", "--repeat", "2"])
    assert res.exit_code == 0, res.output
    assert "--submit --collector https://c.example --repeat 2" in res.output
    assert upload_consent.on_record("https://c.example")


def test_schedule_install_submit_needs_a_collector_and_collector_needs_submit() -> None:
    from probe.cli import main

    res = CliRunner().invoke(main, ["schedule", "install", "--every", "1h", "--scheduler",
                                    "cron", "--submit", "--yes", "--dry-run"])
    assert res.exit_code == 2 and "collector" in res.output
    res = CliRunner().invoke(main, ["schedule", "install", "--every", "1h", "--collector",
                                    "https://c.example", "--yes", "--dry-run"])
    assert res.exit_code == 2 and "--collector is for --submit" in res.output
