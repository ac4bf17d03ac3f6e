"""The lab against ground truth measured from its client namespace.

Every detector is proven against this lab, so each scenario is checked the way
a censor's victim would see it (curl or a raw-socket client in the client
namespace), and the topology is checked hop by hop. One lab per module (about
a second to build), a fresh prefix per test process, always torn down.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab import Lab, LabError, running_lab, system, topology
from probe.lab.targets import targets_toml
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(120)]

PREFIX = f"tplt{os.getpid()}-"
REPO = Path(__file__).resolve().parent.parent
FAST = 5.0  # an unthrottled transfer is at least this many times the configured rate
SLOW = 1.5  # a throttled one at most this many times it
RESOLVE = "import json,socket,sys; print(json.dumps([*map(socket.gethostbyname, sys.argv[1:])]))"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reap_stale_test_labs(tmp_path_factory.mktemp("stale"))
    with running_lab(tmp_path_factory.mktemp("lab"), PREFIX) as lab:
        yield lab


def reap_stale_test_labs(scratch: Path) -> None:
    """Remove labs of test runs that were killed before their teardown (prefix names a dead pid)."""
    for ns in system.namespaces("tpl"):
        m = re.match(r"(tpl[tf](\d+)-)", ns)
        if m and not Path(f"/proc/{m.group(2)}").exists():
            Lab(scratch, m.group(1)).down()


def gt(lab: Lab, *args: str) -> dict | list:
    """Run a probe.lab.groundtruth tool in the client namespace; its JSON answer."""
    proc = lab.exec([sys.executable, "-m", "probe.lab.groundtruth", *args], timeout=90)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fetch(lab: Lab, url: str, *extra: str) -> dict:
    return gt(lab, "fetch", "--url", url, "--ca", lab.state["ca"]["cert"], *extra)


def curl(
    lab: Lab, url: str, *extra: str, max_time: float = 30, output: str = "/dev/null"
) -> tuple[int, dict, str]:
    """curl in the client ns: exit code, its -w numbers, stderr."""
    fmt = "%{http_code} %{size_download} %{speed_download} %{speed_upload}"
    proc = lab.exec(
        ["curl", "-sS", "-o", output, "--cacert", lab.state["ca"]["cert"],
         "--max-time", str(max_time), "-w", fmt, *extra, url], timeout=max_time + 10,
    )
    values = [float(v) for v in proc.stdout.split()]
    keys = ("code", "down", "down_Bps", "up_Bps")
    return proc.returncode, dict(zip(keys, values, strict=False)), proc.stderr


def kbps(bytes_per_second: float) -> float:
    return bytes_per_second * 8 / 1000


def rules(ns: str) -> list[str]:
    """The iptables rules (-A lines) of one namespace."""
    out = system.ns_run(ns, [system.IPTABLES_SAVE])
    return [line for line in out.splitlines() if line.startswith("-A")]


def qdiscs(ns: str) -> str:
    return system.ns_run(ns, ["tc", "qdisc", "show"])


# -- topology, DNS, TLS ---------------------------------------------------------------


def test_ttl_expires_hop_by_hop_at_distinct_router_addresses(lab: Lab) -> None:
    lab.scenario("clean")
    twitter = lab.state["hosts"]["pbs.twimg.com"]["address"]
    hops = gt(lab, "traceroute", twitter)
    routers = [r["west"] for r in lab.state["routers"]]
    assert len(routers) == len(set(routers)) == 4
    assert [h["address"] for h in hops[:4]] == routers
    assert all(h["icmp_type"] == 11 for h in hops[:4])  # time exceeded
    assert (hops[4]["address"], hops[4]["icmp_type"], hops[4]["icmp_code"]) == (twitter, 3, 3)


def test_client_resolves_every_lab_name_through_the_lab_dns(lab: Lab) -> None:
    lab.scenario("clean")
    hosts = {**lab.state["hosts"], "measure.lab.test": {"address": topology.MEASURE_ADDRESS}}
    proc = lab.exec([sys.executable, "-c", RESOLVE, *hosts], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [h["address"] for h in hosts.values()]
    resolv = lab.exec(["cat", "/etc/resolv.conf"]).stdout
    assert f"nameserver {topology.DNS_ADDRESS}" in resolv


def test_tls_verifies_with_the_lab_ca_only(lab: Lab) -> None:
    lab.scenario("clean")
    code = (
        "import json,socket,ssl,sys\n"
        "out={}\n"
        "for ca in sys.argv[1:3]:\n"
        "  ctx=ssl.create_default_context(cafile=ca)\n"
        "  for n in sys.argv[3:]:\n"
        "    try:\n"
        "      with ctx.wrap_socket(socket.create_connection((n,443),5),server_hostname=n):\n"
        "        out[ca+n]='ok'\n"
        "    except ssl.SSLCertVerificationError as e: out[ca+n]=e.verify_message\n"
        "print(json.dumps(out))"
    )
    names = [*lab.state["hosts"], topology.MEASURE_NAME]
    lab_ca, foreign = lab.state["ca"]["cert"], lab.state["foreign_ca"]["cert"]
    proc = lab.exec([sys.executable, "-c", code, lab_ca, foreign, *names], timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert all(result[lab_ca + n] == "ok" for n in names)
    assert all(result[foreign + n] != "ok" for n in names)


def test_origins_serve_the_generated_media(lab: Lab, tmp_path: Path) -> None:
    lab.scenario("clean")
    media = Path(lab.state["media"]["dir"])
    for rel in ("video/hls/master.m3u8", "video/hls/720p/playlist.m3u8",
                "video/hls/720p/seg1.m4s", "img/photo.jpg"):
        out = tmp_path / rel.replace("/", "_")
        code, info, err = curl(lab, f"https://video.twimg.com/media/{rel}", output=str(out))
        assert code == 0 and info["code"] == 200, err
        assert out.read_bytes() == (media / rel).read_bytes()
    segment = (media / "video/hls/720p/seg1.m4s").read_bytes()
    assert [segment[4:8], segment[28:32]] == [b"styp", b"moof"]
    assert lab.state["media"]["objects"]["video/clip.mp4"] == 2_000_000
    # ranges, as a progressive-MP4 player reads
    out = tmp_path / "range"
    code, info, err = curl(lab, "https://video.twimg.com/media/video/clip.mp4", "-r", "0-7",
                           output=str(out))
    assert code == 0 and info["code"] == 206, err
    assert out.read_bytes()[4:8] == b"ftyp"


def test_shipped_targets_match_the_lab() -> None:
    from probe import targets

    path = REPO / "targets" / "lab.toml"
    regenerate = "python -m probe.lab.targets > targets/lab.toml"
    assert path.read_text() == targets_toml(), f"out of date; regenerate: {regenerate}"
    loaded = targets.load([path])
    names = {t.host for t in loaded}
    assert names <= {h.name for h in topology.HOSTS}
    assert {t.family for t in loaded} == {"twitter", "control", "control-tco"}


# -- scenarios ------------------------------------------------------------------------


def test_sni_throttle_polices_twitter_names_to_the_rate(lab: Lab) -> None:
    lab.scenario("sni-throttle", rate_kbps=400)
    tw = fetch(lab, "https://pbs.twimg.com/media/img/photo.jpg")
    assert tw["status"] == 200 and tw["bytes"] == 300_000
    assert 400 * 0.8 <= tw["goodput_kbps"] <= 400 * 1.2, tw
    ctl = fetch(lab, "https://images.lab.test/media/img/photo.jpg")
    assert ctl["goodput_kbps"] > FAST * 400, ctl
    thumb = Path(lab.state["media"]["dir"]) / "img/thumb.jpg"
    code, up, err = curl(lab, "https://pbs.twimg.com/upload", "--data-binary", f"@{thumb}")
    assert code == 0 and kbps(up["up_Bps"]) < SLOW * 400, (up, err)  # each direction policed


def test_sni_throttle_default_rate_is_130_kbps(lab: Lab) -> None:
    state = lab.scenario("sni-throttle")
    assert state["scenario"]["rate_kbps"] == 130
    tw = fetch(lab, "https://abs.twimg.com/media/img/thumb.jpg")
    assert tw["bytes"] == 60_000
    assert 130 * 0.8 <= tw["goodput_kbps"] <= 130 * 1.2, tw


def test_sni_split_across_segments_evades_the_throttle(lab: Lab) -> None:
    lab.scenario("sni-throttle", rate_kbps=400)
    split = fetch(lab, "https://pbs.twimg.com/media/img/photo.jpg", "--split-sni")
    assert split["status"] == 200 and split["goodput_kbps"] > FAST * 400, split
    whole = fetch(lab, "https://pbs.twimg.com/media/img/thumb.jpg")
    assert whole["goodput_kbps"] < SLOW * 400, whole


def test_fragmented_client_hello_records_evade_the_throttle(lab: Lab) -> None:
    lab.scenario("sni-throttle", rate_kbps=400)
    fragmented = fetch(lab, "https://pbs.twimg.com/media/img/photo.jpg", "--split-record")
    assert fragmented["status"] == 200 and fragmented["goodput_kbps"] > FAST * 400, fragmented


def test_a_non_tls_first_packet_over_100_bytes_ends_inspection(lab: Lab) -> None:
    """Random bytes seen by the throttler (hop 2) before the ClientHello exempt the flow."""
    lab.scenario("sni-throttle", rate_kbps=400, hop=2)
    url = "https://pbs.twimg.com/media/img/thumb.jpg"
    big = fetch(lab, url, "--trigger-random", "200", "--trigger-ttl", "3")
    small = fetch(lab, url, "--trigger-random", "40", "--trigger-ttl", "3")
    unseen = fetch(lab, url, "--trigger-random", "200", "--trigger-ttl", "1")  # dies at r1
    assert big["status"] == small["status"] == unseen["status"] == 200
    assert big["goodput_kbps"] > FAST * 400, big
    assert small["goodput_kbps"] < SLOW * 400, small
    assert unseen["goodput_kbps"] < SLOW * 400, unseen


def test_collateral_hits_names_containing_t_co_but_not_pbs(lab: Lab) -> None:
    lab.scenario("collateral", rate_kbps=400)
    for host in ("www.reddit.com", "t.co", "www.microsoft.com"):
        code, info, err = curl(lab, f"https://{host}/media/img/thumb.jpg")
        assert code == 0 and kbps(info["down_Bps"]) < SLOW * 400, (host, info, err)
    code, info, err = curl(lab, "https://pbs.twimg.com/media/img/photo.jpg")
    assert code == 0 and kbps(info["down_Bps"]) > FAST * 400, (info, err)


def test_ip_throttle_hits_twitter_addresses_whatever_the_sni(lab: Lab) -> None:
    lab.scenario("ip-throttle", rate_kbps=400)
    pbs = lab.state["hosts"]["pbs.twimg.com"]["address"]
    _, neutral_on_twitter, _ = curl(lab, "https://images.lab.test/media/img/thumb.jpg",
                                    "--connect-to", f"images.lab.test:443:{pbs}:443")
    assert kbps(neutral_on_twitter["down_Bps"]) < SLOW * 400, neutral_on_twitter
    _, twitter_on_measure, _ = curl(lab, "https://pbs.twimg.com/media/img/photo.jpg",
                                    "--connect-to",
                                    f"pbs.twimg.com:443:{topology.MEASURE_ADDRESS}:443")
    assert twitter_on_measure["code"] == 200
    assert kbps(twitter_on_measure["down_Bps"]) > FAST * 400, twitter_on_measure


def test_upload_throttle_slows_only_uploads(lab: Lab) -> None:
    lab.scenario("upload-throttle", rate_kbps=400)
    thumb = Path(lab.state["media"]["dir"]) / "img/thumb.jpg"
    code, up, err = curl(lab, "https://images.lab.test/upload", "--data-binary", f"@{thumb}")
    assert code == 0 and up["code"] == 200, err
    assert kbps(up["up_Bps"]) < SLOW * 400, up
    _, down, _ = curl(lab, "https://images.lab.test/media/img/photo.jpg")
    assert kbps(down["down_Bps"]) > FAST * 400, down


def test_congestion_slows_everything(lab: Lab) -> None:
    lab.scenario("congestion", rate_kbps=400)
    for host in ("images.lab.test", "pbs.twimg.com"):
        code, info, err = curl(lab, f"https://{host}/media/img/thumb.jpg")
        assert code == 0 and kbps(info["down_Bps"]) < SLOW * 400, (host, info, err)


def test_link_rate_shapes_everything_and_composes_with_a_throttle(lab: Lab) -> None:
    """--link-rate: a 1200 kbit/s network; the SNI throttle at hop 2 slows Twitter to 400."""
    state = lab.scenario("sni-throttle", rate_kbps=400, link_kbps=1200)
    s = state["scenario"]
    assert (s["hop"], s["link_hop"], s["link_kbps"]) == (2, 1, 1200)
    ctl = fetch(lab, "https://images.lab.test/media/img/photo.jpg")
    assert 1200 * 0.75 <= ctl["goodput_kbps"] <= 1200 * 1.1, ctl
    tw = fetch(lab, "https://pbs.twimg.com/media/img/photo.jpg")
    assert 400 * 0.8 <= tw["goodput_kbps"] <= 400 * 1.2, tw
    assert lab.scenario("sni-throttle", hop=1, link_kbps=1200)["scenario"]["link_hop"] == 4
    assert "link_kbps" not in lab.scenario("clean")["scenario"]  # replaced, link included
    assert fetch(lab, "https://images.lab.test/media/img/photo.jpg")["goodput_kbps"] > FAST * 1200


def test_rst_block_resets_twitter_tls(lab: Lab) -> None:
    lab.scenario("rst-block")
    code, _, err = curl(lab, "https://pbs.twimg.com/media/img/thumb.jpg")
    assert code in (35, 56) and "reset" in err.lower(), (code, err)
    code, info, err = curl(lab, "https://images.lab.test/media/img/thumb.jpg")
    assert code == 0 and info["code"] == 200, err


def test_blackhole_times_out_twitter_tls(lab: Lab) -> None:
    lab.scenario("blackhole")
    code, _, err = curl(lab, "https://video.twimg.com/media/img/thumb.jpg", max_time=3)
    assert code == 28, (code, err)  # operation timed out
    code, info, err = curl(lab, "https://images.lab.test/media/img/thumb.jpg")
    assert code == 0 and info["code"] == 200, err


def test_dns_poison_answers_bogus_addresses_for_twitter_names(lab: Lab) -> None:
    lab.scenario("dns-poison", hop=3)
    names = ["pbs.twimg.com", "twitter.com", "t.co", "www.reddit.com", "images.lab.test"]
    proc = lab.exec([sys.executable, "-c", RESOLVE, *names], timeout=30)
    assert proc.returncode == 0, proc.stderr
    hosts = lab.state["hosts"]
    assert json.loads(proc.stdout) == [topology.POISON_ADDRESS] * 3 + [
        hosts["www.reddit.com"]["address"], hosts["images.lab.test"]["address"]]
    poisoner = [p for p in lab.state["processes"] if p["name"] == "poison-dns"]
    assert [p["ns"] for p in poisoner] == [lab.names.router(3)]


def test_tls_mitm_presents_a_foreign_ca(lab: Lab) -> None:
    lab.scenario("tls-mitm")
    verified = fetch(lab, "https://pbs.twimg.com/media/img/thumb.jpg")
    assert "CERTIFICATE_VERIFY_FAILED" in (verified["failure"] or ""), verified
    code = (
        "import socket,ssl,sys\n"
        "ctx=ssl.create_default_context()\n"
        "ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE\n"
        "with ctx.wrap_socket(socket.create_connection((sys.argv[1],443),5),"
        "server_hostname=sys.argv[1]) as s: print(s.getpeercert(True).hex())"
    )
    from cryptography import x509

    proc = lab.exec([sys.executable, "-c", code, "pbs.twimg.com"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    cert = x509.load_der_x509_certificate(bytes.fromhex(proc.stdout.strip()))
    assert cert.issuer.rfc4514_string() == "CN=Foreign Interceptor CA"
    control = fetch(lab, "https://images.lab.test/media/img/thumb.jpg")
    assert control["status"] == 200, control


@pytest.mark.parametrize("hop", [1, 4])
def test_rules_live_only_in_router_n(lab: Lab, hop: int) -> None:
    for name in ("sni-throttle", "tls-mitm"):
        lab.scenario(name, hop=hop)
        for h, ns in enumerate(lab.names.routers, start=1):
            assert bool(rules(ns)) == (h == hop), (name, ns, rules(ns))
            assert ("htb" in qdiscs(ns)) == (h == hop and name == "sni-throttle"), ns
        for ns in (lab.names.client, lab.names.server):
            assert not rules(ns)


def test_the_lab_client_keeps_its_probe_state_in_the_lab_folder(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROBE_STATE_DIR", raising=False)
    out = lab.exec(["sh", "-c", 'echo "$PROBE_STATE_DIR"'], timeout=10).stdout.strip()
    assert out == str(lab.dir / "client-state")
    monkeypatch.setenv("PROBE_STATE_DIR", "/elsewhere")
    assert lab.exec(["sh", "-c", 'echo "$PROBE_STATE_DIR"'], timeout=10).stdout.strip() == \
        "/elsewhere"


def test_zoo_scenarios_live_only_in_router_n_with_their_knobs(lab: Lab) -> None:
    from probe.lab.scenarios import ZOO, Tuning

    for name in ZOO:
        state = lab.scenario(name, rate_kbps=256, hop=3,
                             tuning=Tuning(burst_kb=8, buffer_ms=500, after_kb=50, loss_pct=1))
        knobs = {k: v for k, v in state["scenario"].items()
                 if k in ("burst_kb", "buffer_ms", "after_kb", "loss_pct")}
        assert knobs == {"police": {"burst_kb": 8}, "lossy": {"loss_pct": 1}, "late":
                         {"buffer_ms": 500, "after_kb": 50}}.get(name, {"buffer_ms": 500}), name
        for h, ns in enumerate(lab.names.routers, start=1):
            assert bool(rules(ns)) == (h == 3), (name, ns)
            assert ("htb" in qdiscs(ns)) == (h == 3 and name != "lossy"), (name, ns)
        r3 = lab.names.router(3)
        classes = system.ns_run(r3, ["tc", "class", "show", "dev", "west"])
        per_flow = name not in ("shared", "lossy")
        assert classes.count("rate 256Kbit") == (8 if per_flow else 1 if name == "shared"
                                                 else 0), (name, classes)
    lab.scenario("clean")
    assert not any(rules(ns) for ns in lab.names.routers)


def test_trigger_whose_ttl_expires_at_the_throttler_still_marks_the_flow(lab: Lab) -> None:
    """What the locate experiment relies on: inspection before the TTL check."""
    lab.scenario("sni-throttle", rate_kbps=400, hop=3)
    pbs = lab.state["hosts"]["pbs.twimg.com"]["address"]
    neutral = "https://images.lab.test/media/img/thumb.jpg"
    common = ("--connect-to", pbs, "--trigger-sni", "pbs.twimg.com")
    before = fetch(lab, neutral, *common, "--trigger-ttl", "2")  # expires at r2
    at = fetch(lab, neutral, *common, "--trigger-ttl", "3")  # expires at r3, the throttler
    assert before["status"] == at["status"] == 200
    assert before["goodput_kbps"] > FAST * 400, before
    assert at["goodput_kbps"] < SLOW * 400, at


def test_scenario_replaces_the_previous_one(lab: Lab) -> None:
    lab.scenario("dns-poison", hop=2)
    lab.scenario("clean")
    assert not any(rules(ns) for ns in lab.names.routers)
    assert not any(p.get("scenario") for p in lab.state["processes"])
    assert lab.state["scenario"] == {"name": "clean", "rate_kbps": None, "hop": None}
    with pytest.raises(LabError):
        lab.scenario("sni-throttle", hop=5)


def test_a_scenario_that_fails_to_start_leaves_the_lab_clean(lab: Lab) -> None:
    zone = Path(lab.state["dns"]["poison_zone"])
    good = zone.read_text()
    zone.write_text("{not json")
    try:
        with pytest.raises(LabError, match="exited"):
            lab.scenario("dns-poison", hop=2)
    finally:
        zone.write_text(good)
    assert lab.state["scenario"]["name"] == "clean"
    assert not any(rules(ns) for ns in lab.names.routers)
    assert not any(p.get("scenario") for p in lab.state["processes"])


# -- command line and cleanup --------------------------------------------------------------


def probe_lab(lab: Lab, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probe.lab.cli", *args, "--dir", str(lab.dir), "--prefix",
         lab.names.prefix], capture_output=True, text=True, timeout=60, **kw,
    )


def test_cli_status_exec_and_scenario(lab: Lab) -> None:
    proc = probe_lab(lab, "scenario", "collateral", "--rate", "300", "--hop", "4",
                     "--link-rate", "5000")
    assert proc.returncode == 0, proc.stderr
    assert "collateral at hop 4" in proc.stdout and "link 5000 kbps at hop 1" in proc.stdout
    status = json.loads(probe_lab(lab, "status", "--json").stdout)
    assert status["scenario"]["name"] == "collateral"
    assert (status["scenario"]["rate_kbps"], status["scenario"]["hop"]) == (300, 4)
    assert (status["scenario"]["link_kbps"], status["scenario"]["link_hop"]) == (5000, 1)
    assert "link 5000 kbps" in probe_lab(lab, "status").stdout
    assert status["up"] and sorted(status["namespaces"]) == sorted(lab.names.chain)
    assert all(p["alive"] for p in status["processes"])
    exec_ = subprocess.run(
        [sys.executable, "-m", "probe.lab.cli", "exec", "--dir", str(lab.dir), "--prefix",
         lab.names.prefix, "--", "sh", "-c", "ip -o -4 addr show dev east; exit 7"],
        capture_output=True, text=True, timeout=30,
    )
    assert exec_.returncode == 7
    assert topology.CLIENT_ADDRESS in exec_.stdout


def test_failure_inside_the_fixture_and_a_crash_leave_nothing(tmp_path: Path) -> None:
    prefix = f"tplf{os.getpid()}-"
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="test failure"):
        with running_lab(tmp_path / "a", prefix) as lab:
            lab.scenario("dns-poison")
            pids = [p["pid"] for p in lab.state["processes"]]
            raise RuntimeError("test failure")
    assert len(pids) == 4
    assert_gone(prefix, pids)
    # A crash: the lab is up, its state file lost; `down` still finds everything by prefix.
    crashed = Lab(tmp_path / "b", prefix)
    crashed.up()
    pids = [p["pid"] for p in crashed.state["processes"]]
    crashed.state_path.unlink()
    Lab(tmp_path / "elsewhere", prefix).down()
    assert_gone(prefix, pids)
    Lab(tmp_path / "elsewhere", prefix).down()  # idempotent


def assert_gone(prefix: str, pids: list[int]) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert not list(Path("/etc/netns").glob(f"{prefix}*"))
    assert not [p for p in pids if system.alive(p)]


def test_labs_with_overlapping_prefixes_leave_each_other_alone(tmp_path: Path) -> None:
    """`down` of prefix P removes P's own names only: not `Pr1` of a lab whose prefix is
    shorter, nor the processes recorded in a folder that another lab's state holds."""
    base = f"tplo{os.getpid()}-"
    other = f"{base}r1"  # what a lab with prefix `base` calls its first router
    system.run(["ip", "netns", "add", other])
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        Lab(tmp_path / "a", f"{base}r").down()  # a prefix that is a prefix of `other`
        assert other in system.namespaces(base)
        shared = tmp_path / "shared"
        shared.mkdir()
        state = {"prefix": base, "processes": [
            {"pid": sleeper.pid, "argv": ["sleep", "60"], "name": "x"}]}
        (shared / "state.json").write_text(json.dumps(state))
        stranger = Lab(shared, f"tplz{os.getpid()}-")
        stranger.down()
        assert sleeper.poll() is None and (shared / "state.json").exists()
        with pytest.raises(LabError, match="give this one its own --dir"):
            stranger.up()
        with pytest.raises(LabError, match="bad namespace prefix"):
            Lab(tmp_path / "b", "*")
    finally:
        sleeper.kill()
        sleeper.wait()
        system.run(["ip", "netns", "del", other], check=False)
