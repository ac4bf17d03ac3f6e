"""`probe run` end to end on loopback: real DNS and TLS servers, the real CLI in a subprocess.

Covers what issue 2 promises a volunteer and a researcher: the folder and its
files, the path printed last, interleaving, failures as results, bad input as
exit 2 with nothing written, and a `kill -9` that leaves rebuildable results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from analysis.verdicts import CONTROL_MIN_KBPS
from probe.progress import slow_network_note
from tests.probe_world import PROBE, probe_cmd, read_csv, run_probe, targets

BASIC = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes/200000"
family = "twitter"
kind = "image"
pair = "ctl-image"

[[target]]
name = "tw-image-2"
url = "https://pbs.twimg.com:PORT/bytes/50000"
family = "twitter"
kind = "image"

[[target]]
name = "ctl-image"
url = "https://images.control.test:PORT/bytes/200000"
family = "control"
kind = "image"

[[target]]
name = "refused"
url = "https://refused.test:CLOSED/x.jpg"
family = "control"
kind = "image"

[[target]]
name = "nxdomain"
url = "https://no-such-name.test:PORT/x.jpg"
family = "control"
kind = "image"
"""


def test_run_writes_a_complete_folder(world: dict, tmp_path: Path) -> None:
    res = run_probe(world, targets(world, BASIC), tmp_path, "--repeat", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path and folder.is_dir()
    assert res.stdout.strip() == str(folder)  # --quiet: only the path
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "complete" and info["measurements"] == 10
    assert info["end"] and info["probe_version"]
    assert all(len(h) == 64 for h in info["target_files"].values())

    ms = [json.loads(line) for line in open(folder / "measurements.jsonl")]
    assert [m["test_keys"]["target"]["name"] for m in ms[:5]] == [
        "tw-image", "ctl-image", "tw-image-2", "refused", "nxdomain"]  # interleaved
    assert {m["annotations"]["repetition"] for m in ms} == {"0", "1"}
    failures = {m["test_keys"]["target"]["name"]: m["test_keys"]["failure"] for m in ms}
    assert failures == {"tw-image": None, "tw-image-2": None, "ctl-image": None,
                        "refused": "connection_refused", "nxdomain": "dns_nxdomain_error"}
    env = ms[0]
    for key in ("measurement_start_time", "test_runtime", "input", "test_keys"):
        assert key in env
    for key in ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events"):
        assert env["test_keys"][key], key
    assert any(e["operation"] == "bytes_received_cumulative"
               for e in env["test_keys"]["network_events"])

    transfers = read_csv(folder, "transfers.csv")
    ok = [t for t in transfers if t["target"] == "tw-image"]
    assert len(ok) == 2 and all(int(t["bytes"]) == 200000 for t in ok)
    assert all(t["sni"] == "pbs.twimg.com" and t["address"] == "127.0.0.1" for t in ok)
    assert all(float(t["goodput_kbps"]) > 0 and t["failure"] == "" for t in ok)
    samples = [s for s in read_csv(folder, "samples.csv")
               if s["transfer_id"] == ok[0]["transfer_id"]]
    assert samples and int(samples[-1]["bytes"]) == 200000
    tls = read_csv(folder, "tls.csv")
    assert {r["verified"] for r in tls} == {"true"}
    dns_rows = read_csv(folder, "dns.csv")
    assert {r["rcode"] for r in dns_rows if r["hostname"] == "no-such-name.test"} == {"NXDOMAIN"}
    assert any(r["success"] == "false" and r["failure"] == "connection_refused"
               for r in read_csv(folder, "tcp.csv"))


def test_summary_and_path_without_quiet(world: dict, tmp_path: Path) -> None:
    res = run_probe(world, targets(world, BASIC), tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert Path(lines[-1]).is_dir()
    text = res.stdout
    assert "tw-image" in text and "connection_refused" in text and "dns_nxdomain_error" in text
    tw_row = next(line for line in text.splitlines() if "│ tw-image " in line)
    verdict = tw_row.split("│")[-2].strip()  # the verdict column, last
    assert verdict in ("ok", "inconclusive"), tw_row  # loopback: never throttled
    ctl_row = next(line for line in text.splitlines() if "│ ctl-image " in line)
    assert ctl_row.split("│")[-2].strip() == "(control)"


@pytest.mark.parametrize("body, where, what", [
    ('[[target]]\nname = "a"\nurl = "https://x.test/"\nfamily = "twitter"\nkind = "image"\n'
     'colour = "red"\n', ":6:", "colour"),
    ('[[target]]\nname = "a"\nurl = "ftp://x.test/"\nfamily = "twitter"\nkind = "image"\n',
     ":3:", "url"),
    ('[[target]\nname = "a"\n', ":1", ""),
])
def test_bad_targets_exit_2_and_write_nothing(world: dict, tmp_path: Path, body: str,
                                              where: str, what: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    out = tmp_path / "out"
    res = run_probe(world, bad, out)
    assert res.returncode == 2
    assert f"{bad}{where}" in res.stderr and what in res.stderr
    assert not out.exists() or not any(p for p in out.iterdir() if p.name != ".lock")
    assert res.stdout == ""


SLOW = """
[[target]]
name = "slow-1"
url = "https://pbs.twimg.com:PORT/slow/60000?kbps=400"
family = "twitter"
kind = "image"

[[target]]
name = "slow-2"
url = "https://images.control.test:PORT/slow/60000?kbps=400"
family = "control"
kind = "image"
"""


def test_kill_9_leaves_rebuildable_results(world: dict, tmp_path: Path) -> None:
    cmd = probe_cmd(world, targets(world, SLOW), tmp_path, "--repeat", "20", "--quiet",
                    "--no-early-stop")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PROBE_LOCK_FILE": str(tmp_path / ".lock")})
    try:
        deadline = time.monotonic() + 60
        jsonl = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*/measurements.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 2:
                jsonl = found[0]
                break
            time.sleep(0.1)
        assert jsonl is not None, "the run wrote no measurement in time"
        time.sleep(0.5)  # now mid-transfer of a later measurement
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = jsonl.parent
    lines = jsonl.read_text().splitlines()
    written = [json.loads(line) for line in lines]  # every line parses
    assert len(written) >= 2
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    res = subprocess.run(PROBE + ["rebuild", str(folder)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    transfers = read_csv(folder, "transfers.csv")
    assert len(transfers) == len(written)
    assert {t["measurement_id"] for t in transfers} == {
        m["annotations"]["measurement_id"] for m in written}


ONE = """
[[target]]
name = "tw-image"
url = "https://pbs.twimg.com:PORT/bytes/20000"
family = "twitter"
kind = "image"
"""


def test_connect_to_pins_an_unresolvable_name(world: dict, tmp_path: Path) -> None:
    body = ONE.replace('"tw-image"', '"pinned"').replace("pbs.twimg.com", "wrong.test")
    res = run_probe(world, targets(world, body), tmp_path, "--quiet",
                    "--connect-to", "wrong.test:127.0.0.1")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip())
    (m,) = [json.loads(line) for line in open(folder / "measurements.jsonl")]
    assert m["test_keys"]["queries"][0]["failure"] == "dns_nxdomain_error"  # DNS still recorded
    assert m["test_keys"]["address"] == "127.0.0.1" and m["test_keys"]["failure"] is None
    assert read_csv(folder, "tls.csv")[0]["verified"] == "true"


def test_doh_resolver_only(world: dict, tmp_path: Path, test_ca) -> None:
    from tests.servers.doh import DohServer

    zone = {"records": {"pbs.twimg.com": {"A": ["127.0.0.1"]}}}
    with DohServer(zone, test_ca.issue(["127.0.0.1"], stem="doh")) as doh:
        res = subprocess.run(
            PROBE + ["run", "--yes", "--targets", str(targets(world, ONE)),
                     "--no-system-resolver", "--doh", doh.url, "--ca-bundle", str(world["ca"]),
                     "--allow-net", "127.0.0.0/8", "--out", str(tmp_path), "--quiet"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PROBE_LOCK_FILE": str(tmp_path / ".lock"),
                 "PROBE_STATE_DIR": str(tmp_path / ".state")})
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip())
    rows = read_csv(folder, "dns.csv")
    assert {r["engine"] for r in rows} == {"doh"}
    assert any(r["answers"] == "127.0.0.1" for r in rows if r["hostname"] == "pbs.twimg.com")
    assert "tw-image" in {t["target"] for t in read_csv(folder, "transfers.csv")}


def test_summary_says_when_every_flow_was_slow() -> None:
    def rows(*controls: float | None) -> list[dict]:
        return [{"target": f"t{i}", "control_rate_kbps": c} for i, c in enumerate(controls)]

    note = slow_network_note(rows(120.0, 119.0, float("nan"), None), CONTROL_MIN_KBPS)
    assert note is not None and "about 120 kbit/s" in note and "slow or congested" in note
    assert slow_network_note(rows(120.0, 9000.0, 8000.0), CONTROL_MIN_KBPS) is None
    assert slow_network_note(rows(None, float("nan")), CONTROL_MIN_KBPS) is None
    assert slow_network_note([], CONTROL_MIN_KBPS) is None


@pytest.mark.parametrize("extra, message", [
    (("--server", "http://measure.test"), "--server must be an https:// URL"),
    (("--ca-bundle", "CA_TEXT"), "not a PEM file of CA certificates"),
])
def test_bad_server_or_ca_bundle_exit_2_and_write_nothing(
        world: dict, tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    text = tmp_path / "ca.txt"
    text.write_text("not a certificate\n")
    out = tmp_path / "out"
    res = run_probe(world, targets(world, BASIC), out,
                    *[str(text) if a == "CA_TEXT" else a for a in extra])
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
