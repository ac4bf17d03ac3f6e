"""Issue 6 on loopback: the lock, budgets, signals, hostile servers, consent, unwritable output."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from probe.operate import consent
from probe.operate.budget import Budget, Ledger
from probe.operate.lock import LockedError, RunLock
from probe.operate.privacy import Scrubber
from tests.conftest import needs_root
from tests.probe_world import probe_cmd, read_csv, run_probe, targets

SLOW = """
[[target]]
name = "slow-tw"
url = "https://pbs.twimg.com:PORT/slow/100000?kbps=400"
family = "twitter"
kind = "image"

[[target]]
name = "slow-ctl"
url = "https://images.control.test:PORT/slow/100000?kbps=400"
family = "control"
kind = "image"
"""


def _start(world: dict, body: str, out: Path, *extra: str, lock: Path | None = None,
           **env: str) -> subprocess.Popen:
    cmd = probe_cmd(world, targets(world, body), out, "--quiet", "--no-early-stop", *extra)
    environ = {**os.environ, "PROBE_LOCK_FILE": str(lock or out / ".lock"), **env}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environ)


def _wait_for_lines(out: Path, n: int, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in out.glob("*/measurements.jsonl"):
            if len(f.read_text().splitlines()) >= n:
                return f
        time.sleep(0.05)
    raise AssertionError(f"no {n} measurements within {timeout}s")


def test_second_concurrent_run_is_refused_with_3(world: dict, tmp_path: Path) -> None:
    first = _start(world, SLOW, tmp_path / "a", "--repeat", "10", lock=tmp_path / "lock")
    try:
        _wait_for_lines(tmp_path / "a", 1)
        started = time.monotonic()
        second = run_probe(world, targets(world, SLOW), tmp_path / "b",
                           env={**os.environ, "PROBE_LOCK_FILE": str(tmp_path / "lock")})
        assert second.returncode == 3
        assert time.monotonic() - started < 10  # at once, not after the first run
        assert "another probe run is in progress" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert not (tmp_path / "b").exists()
    finally:
        first.kill()
        first.wait(10)


def test_lock_file_that_cannot_exist_is_a_clear_error(world: dict, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = {**os.environ, "PROBE_LOCK_FILE": str(tmp_path / "file" / "lock"),
           "PROBE_STATE_DIR": str(tmp_path / "state")}
    res = run_probe(world, targets(world, SLOW), tmp_path / "out", "--quiet", env=env)
    assert res.returncode == 2 and "cannot create lock file" in res.stderr


def test_cron_and_a_terminal_find_the_same_lock(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Cron sets no XDG_RUNTIME_DIR; the lock must not depend on it (nor live in /tmp)."""
    from probe.operate.lock import default_path

    monkeypatch.delenv("PROBE_LOCK_FILE", raising=False)
    monkeypatch.delenv("PROBE_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    terminal = default_path()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_path() == terminal and terminal.is_relative_to(tmp_path / ".local")
    with RunLock(), pytest.raises(LockedError):  # created in a folder that did not exist
        RunLock().acquire()


def test_lock_wait_and_release(tmp_path: Path) -> None:
    a, b = RunLock(tmp_path / "l"), RunLock(tmp_path / "l")
    a.acquire()
    with pytest.raises(LockedError):
        b.acquire()
    with pytest.raises(LockedError):
        b.acquire(wait=True, timeout=0.5)
    a.release()
    b.acquire(wait=True, timeout=5)
    b.release()


def test_sigterm_finishes_the_measurement_in_flight(world: dict, tmp_path: Path) -> None:
    proc = _start(world, SLOW, tmp_path, "--repeat", "10")
    try:
        jsonl = _wait_for_lines(tmp_path, 1)
        time.sleep(0.5)  # inside the second measurement
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    folder = jsonl.parent
    assert out.strip().splitlines()[-1] == str(folder)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "interrupted" and info["stop_reason"] == "SIGTERM"
    written = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert info["measurements"] == len(written) >= 2  # the one in flight was finished
    assert all(m["test_keys"]["transfers"][0]["stopped_by"] == "complete" for m in written)
    assert len(read_csv(folder, "transfers.csv")) == len(written)


def test_budget_stops_transfers_and_leaves_valid_results(world: dict, tmp_path: Path) -> None:
    body = SLOW.replace("/slow/100000?kbps=400", "/bytes/200000")
    res = run_probe(world, targets(world, body), tmp_path, "--repeat", "5", "--budget-mb", "0.5",
                    "--quiet", "--no-early-stop")
    assert res.returncode == 0, res.stderr
    assert "stopped early (budget)" in res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "budget-exhausted" and info["stop_reason"] == "budget"
    assert 2 <= info["measurements"] < info["planned_measurements"] == 10
    assert 500_000 <= info["bytes_used"] < 500_000 + 300_000  # overshoot < one object
    rows = read_csv(folder, "transfers.csv")
    assert len(rows) == info["measurements"]


def test_budget_shrinks_the_next_object_to_what_is_left(tmp_path: Path) -> None:
    """The object cap never exceeds the budget left (on a fast link one read batch of up
    to 256 KiB may still arrive past it: bytes already on the way)."""
    from probe.measure.transfer import Limits
    from probe.runner import RunConfig, Runner

    budget = Budget(run_limit=100_000)
    config = RunConfig(target_files=[], out=tmp_path, budget=budget, system_resolver=False,
                       limits=Limits(max_bytes=80_000), early_stop=False)
    runner = Runner(config, [])
    assert runner.context().limits.max_bytes == 80_000
    budget.charge(60_000)
    assert runner.context().limits.max_bytes == 40_000
    budget.charge(40_000)
    assert budget.exhausted()


def test_rolling_daily_budget(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.json")
    first = Budget(daily_limit=1000, ledger=ledger)
    first.charge(700)
    second = Budget(daily_limit=1000, monthly_limit=5000, ledger=ledger)
    assert second.remaining() == 300
    second.charge(400)
    assert second.exhausted()
    assert Budget(daily_limit=1000, ledger=ledger).remaining() == 0
    assert ledger.used_in_month(first.day) == 1100


def test_a_ledger_that_cannot_be_written_does_not_stop_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    budget = Budget(run_limit=1000, daily_limit=5000, ledger=Ledger(blocker / "usage.json"))
    budget.charge(600)  # the ledger's folder cannot exist: a file is in the way
    assert budget.used == 600 and budget.remaining() == 400
    assert "usage.json" in budget.describe()["ledger_error"]


def test_a_bug_outside_a_measurement_leaves_status_error(tmp_path: Path) -> None:
    """run.json must not say `complete` when the run died of our own bug."""
    from probe import targets as targets_mod
    from probe.runner import RunConfig, Runner

    toml = tmp_path / "t.toml"
    toml.write_text('[[target]]\nname = "a"\nurl = "https://127.0.0.1:1/x"\n'
                    'family = "twitter"\nkind = "image"\n'
                    '[[target]]\nname = "b"\nurl = "https://127.0.0.1:1/y"\n'
                    'family = "control"\nkind = "image"\n')

    def observer(event: str, payload: object) -> None:
        if event == "measured":
            raise RuntimeError("observer bug")

    config = RunConfig(target_files=[toml], out=tmp_path / "out", system_resolver=False,
                       allow_nets=["127.0.0.0/8"])
    runner = Runner(config, targets_mod.load([toml]), observer=observer)
    with pytest.raises(RuntimeError, match="observer bug"):
        runner.run()
    info = json.loads((runner.folder / "run.json").read_text())
    assert info["status"] == "error" and info["stop_reason"].startswith("error: RuntimeError")
    assert info["measurements"] == 1 and info["planned_measurements"] == 2
    assert len((runner.folder / "measurements.jsonl").read_text().splitlines()) == 1


def test_a_full_disk_still_leaves_run_json_saying_write_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSONL append and the CSVs fail (ENOSPC); run.json, small, must still be
    rewritten with the status, not left saying `running`."""
    import errno

    from probe import targets as targets_mod
    from probe.results import csvs
    from probe.results.folder import OutputError
    from probe.results.jsonl import JsonlWriter
    from probe.runner import RunConfig, Runner

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    toml = tmp_path / "t.toml"
    toml.write_text('[[target]]\nname = "a"\nurl = "https://127.0.0.1:1/x"\n'
                    'family = "twitter"\nkind = "image"\n')
    monkeypatch.setattr(JsonlWriter, "append", full)
    monkeypatch.setattr(csvs, "write_all", full)
    config = RunConfig(target_files=[toml], out=tmp_path / "out", system_resolver=False,
                       allow_nets=["127.0.0.0/8"])
    runner = Runner(config, targets_mod.load([toml]))
    with pytest.raises(OutputError, match="No space left"):
        runner.run()
    info = json.loads((runner.folder / "run.json").read_text())
    assert info["status"] == "write-error" and info["end"] is not None


HOSTILE = "".join(f"""
[[target]]
name = "{name}"
url = "https://pbs.twimg.com:PORT{path}"
family = "twitter"
kind = "image"
""" for name, path in [
    ("endless", "/endless"), ("drip", "/drip"), ("hugeheaders", "/hugeheaders"),
    ("alert", "/alert?after=20000"), ("reset", "/reset?after=20000"),
    ("garbage", "/garbage"), ("stall", "/stall/100000?after=10000"),
])


def test_hostile_servers_are_recorded_not_crashed_on(world: dict, tmp_path: Path) -> None:
    res = run_probe(world, targets(world, HOSTILE), tmp_path, "--quiet", "--max-seconds", "3",
                    "--max-bytes", "300000", "--no-early-stop")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    rows = {r["target"]: r for r in read_csv(folder, "transfers.csv")}
    assert set(rows) == {"endless", "drip", "hugeheaders", "alert", "reset", "garbage", "stall"}
    for r in rows.values():
        assert float(r["duration_s"] or 0) < 3 + 2, r  # every step bounded in time
    assert rows["endless"]["stopped_by"] == "max_bytes" and rows["endless"]["failure"] == ""
    assert rows["drip"]["failure"] == "generic_timeout_error"
    assert rows["hugeheaders"]["failure"] == "http_invalid_response"
    assert rows["alert"]["failure"].startswith(("ssl_", "connection_reset", "eof_error"))
    assert int(rows["alert"]["bytes"]) >= 20000
    assert rows["reset"]["failure"] == "connection_reset"
    assert rows["garbage"]["failure"] == "http_invalid_response"
    assert rows["stall"]["stopped_by"] == "timeout" or rows["stall"]["stopped_by"] == "max_seconds"
    assert int(rows["stall"]["bytes"]) == 10000


def test_unwritable_out_is_a_clear_error(world: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**os.environ, "PROBE_LOCK_FILE": str(tmp_path / "lock"),
           "PROBE_STATE_DIR": str(tmp_path / "state")}
    res = run_probe(world, targets(world, SLOW), blocker / "results", "--quiet", env=env)
    assert res.returncode == 2
    assert "cannot write results" in res.stderr and "Traceback" not in res.stderr


@needs_root
def test_full_disk_is_a_clear_error_and_keeps_what_was_written(world: dict,
                                                               tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        body = SLOW.replace("/slow/100000?kbps=400", "/bytes/1000")
        res = run_probe(world, targets(world, body), mnt, "--quiet", "--repeat", "200",
                        env={**os.environ, "PROBE_LOCK_FILE": str(tmp_path / "lock")})
        assert res.returncode == 2, res.stderr
        assert "No space left on device" in res.stderr and "Traceback" not in res.stderr
        jsonl = next(mnt.glob("*/measurements.jsonl"))
        lines = jsonl.read_text().splitlines()
        assert lines and all(json.loads(line) for line in lines)  # rolled back, not torn
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_scrubber_replaces_whole_addresses_only() -> None:
    s = Scrubber({"192.0.2.1", "2001:db8::1"})
    out = s.record({"ip": "192.0.2.1", "addr": "192.0.2.1:443", "other": "192.0.2.11",
                    "v6": ["2001:db8::1", "2001:db8::1f"], "192.0.2.1": 1})
    assert out == {"ip": "[scrubbed]", "addr": "[scrubbed]:443", "other": "192.0.2.11",
                   "v6": ["[scrubbed]", "2001:db8::1f"], "[scrubbed]": 1}


def test_scrubber_knows_every_spelling_of_an_ipv6_address() -> None:
    s = Scrubber({"2001:db8::5"})
    for spelling in ("2001:db8:0:0:0:0:0:5", "2001:0DB8::5", "2001:db8::0:5", "[2001:db8::5]:443"):
        assert "2001" not in s.text(f"from {spelling} ok"), spelling
    for other in ("2001:db8::55", "2001:db8::5:1", "12:30:45", "aa:bb:cc:dd:ee:ff"):
        assert s.text(other) == other


def test_scrubber_adds_addresses_that_come_up_later() -> None:
    s = Scrubber({"192.0.2.1"})
    assert s.text("198.51.100.7") == "198.51.100.7"
    s.add({"198.51.100.7"})
    assert s.text("198.51.100.7 and 192.0.2.1") == "[scrubbed] and [scrubbed]"


def test_scrubber_turns_the_home_folder_into_a_tilde() -> None:
    s = Scrubber(set(), home="/home/alice")
    assert s.text("/home/alice/.local/state/usage.json") == "~/.local/state/usage.json"
    assert s.text('File "/home/alice/probe/x.py"') == 'File "~/probe/x.py"'
    for kept in ("/home/alicebob/x", "https://example.test/home/alice/x", "/srv/home/alice"):
        assert s.text(kept) == kept
    assert Scrubber(set(), home="/").text("/etc/x") == "/etc/x"


def test_secondary_ipv4_addresses_are_found(tmp_path: Path) -> None:
    from probe.operate.privacy import _local_ipv4_from_fib

    fib = tmp_path / "fib_trie"
    fib.write_text(
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.0.2.0\n        /24 link UNICAST\n"
        "     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.9\n"
        "        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\n")
    assert _local_ipv4_from_fib(fib) == {"192.0.2.2", "192.0.2.9"}
    assert _local_ipv4_from_fib(tmp_path / "missing") == set()


def test_consent_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_STATE_DIR", str(tmp_path))
    asked = []
    with pytest.raises(consent.ConsentRefused, match="nobody can be asked"):
        consent.ensure(False, False, asked.append)
    assert asked == [] and consent.on_record() is None
    with pytest.raises(consent.ConsentRefused):
        consent.ensure(True, False, lambda text: asked.append(text) or False)
    assert "risk" in asked[0] and consent.on_record() is None
    assert consent.ensure(True, False, lambda text: True) == "given-now"
    assert consent.ensure(True, False, lambda text: 1 / 0) == "on-record"  # never asks again


def test_consent_given_with_yes_survives_an_unwritable_state_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PROBE_STATE_DIR", str(blocker / "state"))  # cannot be created
    assert consent.ensure(False, True, lambda text: 1 / 0) == "yes-flag"
    assert consent.on_record() is None


def test_no_measurement_without_recorded_consent(world: dict, tmp_path: Path) -> None:
    """Without a terminal nobody can be asked: no consent on record and no --yes is exit 2
    before anything is measured; --yes records it, and later runs find it on record."""
    env = {**os.environ, "PROBE_STATE_DIR": str(tmp_path / "state"),
           "PROBE_LOCK_FILE": str(tmp_path / "lock")}
    body = SLOW.replace("/slow/100000?kbps=400", "/bytes/1000")

    def without_yes(out: Path) -> subprocess.CompletedProcess:
        cmd = [a for a in probe_cmd(world, targets(world, body), out, "--quiet") if a != "--yes"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)

    requests = len(world["origin"].seen.requests)
    res = without_yes(tmp_path / "a")
    assert res.returncode == 2, res.stderr
    assert "no consent on record" in res.stderr and "--yes" in res.stderr
    assert not (tmp_path / "a").exists() and len(world["origin"].seen.requests) == requests
    res = run_probe(world, targets(world, body), tmp_path / "b", "--quiet", env=env)
    info = json.loads((Path(res.stdout.strip()) / "run.json").read_text())
    assert info["consent"] == "yes-flag"
    res = without_yes(tmp_path / "c")
    assert res.returncode == 0, res.stderr
    info = json.loads((Path(res.stdout.strip()) / "run.json").read_text())
    assert info["consent"] == "on-record"


def test_log_file_and_verbose(world: dict, tmp_path: Path) -> None:
    body = SLOW.replace("/slow/100000?kbps=400", "/bytes/1000")
    log = tmp_path / "logs" / "probe.log"
    res = run_probe(world, targets(world, body), tmp_path / "out", "--quiet", "--verbose",
                    "--log-file", str(log))
    assert res.returncode == 0, res.stderr
    text = log.read_text()
    assert "measurements planned" in text and "slow-tw: ok" in text and "complete" in text
    assert "slow-ctl: ok" in res.stderr  # --verbose: the same steps on stderr


def test_log_lines_are_in_utc_and_do_not_name_the_home_folder(world: dict,
                                                              tmp_path: Path) -> None:
    home = tmp_path / "home" / "volunteer"
    out, log = home / "results", home / "logs" / "probe.log"
    body = SLOW.replace("/slow/100000?kbps=400", "/bytes/1000")
    env = {**os.environ, "TZ": "Asia/Kolkata", "HOME": str(home),  # UTC+05:30
           "PROBE_LOCK_FILE": str(tmp_path / ".lock"), "PROBE_STATE_DIR": str(tmp_path / "st")}
    res = run_probe(world, targets(world, body), out, "--quiet", "--verbose",
                    "--log-file", str(log), env=env)
    assert res.returncode == 0, res.stderr
    run_id = Path(res.stdout.strip()).name
    for text in (log.read_text(), res.stderr):
        assert str(home) not in text and "volunteer" not in text
        assert "results in ~/results/" in text
        stamps = [line.split(" ", 1)[0] for line in text.splitlines() if " INFO " in line]
        assert stamps and all(s.endswith("Z") for s in stamps)
        # the first line is written within a few seconds of the run id (UTC), not 5.5 h off
        first = dt.datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
        started = dt.datetime.strptime(run_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
        assert abs((first - started).total_seconds()) < 60, (stamps[0], run_id)


def test_second_signal_stops_at_once_and_keeps_valid_results(world: dict,
                                                              tmp_path: Path) -> None:
    proc = _start(world, SLOW, tmp_path, "--repeat", "10")
    try:
        jsonl = _wait_for_lines(tmp_path, 1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # impatient: stop now, mid-transfer
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out.strip().splitlines()[-1] == str(jsonl.parent)
    info = json.loads((jsonl.parent / "run.json").read_text())
    written = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert info["status"] == "interrupted" and info["measurements"] == len(written)
    assert len(read_csv(jsonl.parent, "transfers.csv")) == len(written)
