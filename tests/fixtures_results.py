"""Synthetic but realistic run folders, in the exact result format, for the analysis tests.

Why a simulator and not canned numbers: the detectors must tell a policer's
saw-tooth from a shaper's smooth line and from congestion, so the series must
come from the mechanisms themselves. `simulate` runs a small packet-level TCP
(slow start, fast retransmit, RTO with back-off, in-order delivery to the
application) through a bottleneck:

- `policed`: a token bucket that drops what exceeds the rate (2021 Twitter);
- `shaped`: a FIFO served at the rate with a deep buffer (delay, rarely loss);
- `congested`: a FIFO whose capacity wanders (cross traffic) with random loss;
- `clean`: a fast FIFO.

The application reads every in-order byte the moment it arrives (a sample per
read, and at least every 100 ms), like probe/measure/transfer.py. TCP_INFO
snapshots (every 100 ms) are what the probe's kernel would say: on a download
the probe is the receiver, so its RTT estimate stays at the handshake value
and it counts no retransmissions; on an upload it is the sender and sees the
RTT and the losses. Run folders are written with the probe's own writers
(`JsonlWriter`, `csvs.write_all`, `folder.write_run_json`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from probe.results import csvs
from probe.results import folder as run_folder
from probe.results.jsonl import JsonlWriter

MSS = 1448
LINE_BPS = 100e6  # access line rate: packets leave the sender back to back at this rate


@dataclass
class Path_:
    """The network a transfer crosses."""

    mode: str = "clean"  # clean | policed | shaped | congested
    rate_kbps: float = 20_000.0
    rtt_ms: float = 40.0
    burst_bytes: int = 16_000  # policer bucket
    buffer_pkts: int = 200  # FIFO depth (shaped, congested, clean)
    loss: float = 0.0  # random loss per packet (congested cross traffic)
    wander: float = 0.0  # congested: log-sd of the capacity per 500 ms step


@dataclass
class Transfer:
    samples: list[list[float]]
    tcp_info: list[dict]
    bytes: int
    duration_s: float
    retransmits: int
    stopped_by: str


class _Bucket:
    def __init__(self, rate_bps: float, burst: int) -> None:
        self.rate = rate_bps / 8
        self.cap = burst
        self.tokens = float(burst)
        self.t = 0.0

    def offer(self, ts: float) -> float | None:
        self.tokens = min(self.cap, self.tokens + (ts - self.t) * self.rate)
        self.t = ts
        if self.tokens >= MSS:
            self.tokens -= MSS
            return ts + MSS * 8 / LINE_BPS
        return None


class _Fifo:
    def __init__(self, rate_bps: float, buffer_pkts: int, rng: random.Random,
                 wander: float = 0.0, loss: float = 0.0) -> None:
        self.base = rate_bps
        self.buffer = buffer_pkts
        self.busy_until = 0.0
        self.rng = rng
        self.wander = wander
        self.loss = loss
        self.level = 0.0
        self.step = -1

    def _rate(self, ts: float) -> float:
        step = int(ts / 0.5)
        while self.wander and self.step < step:
            self.step += 1
            self.level = 0.8 * self.level + self.rng.gauss(0.0, self.wander)
        return self.base * math.exp(self.level)

    def offer(self, ts: float) -> float | None:
        if self.loss and self.rng.random() < self.loss:
            return None
        rate = self._rate(ts)
        backlog = max(0.0, self.busy_until - ts) * rate / (MSS * 8)
        if backlog >= self.buffer:
            return None
        self.busy_until = max(ts, self.busy_until) + MSS * 8 / rate
        return self.busy_until


def simulate(path: Path_, *, seconds: float = 10.0, max_bytes: int = 512 * 1024,
             direction: str = "down", seed: int = 0) -> Transfer:
    """One transfer through `path`, capped like the probe caps it (bytes, then seconds)."""
    rng = random.Random(seed)
    rtt = path.rtt_ms / 1000 * rng.uniform(0.95, 1.05)
    rate = path.rate_kbps * 1000
    if path.mode == "policed":
        box: _Bucket | _Fifo = _Bucket(rate, path.burst_bytes)
    else:
        box = _Fifo(rate, path.buffer_pkts, rng, path.wander, path.loss)
    total = math.ceil(max_bytes / MSS)
    arrival: dict[int, float] = {}
    rtts: list[tuple[float, float]] = []  # (time, rtt sample) seen by the sender
    retrans: list[float] = []  # times of retransmissions
    cwnd, ssthresh, rto_backoff = 10.0, 1e9, 0
    next_seq, lost = 0, []
    t = rtt / 2  # the request reaches the server
    deadline = seconds + rtt
    while t < deadline and len(arrival) < total:
        burst = sorted(lost)[: int(cwnd)]
        resent = set(burst)
        lost = [s for s in lost if s not in resent]
        retrans += [t] * len(burst)
        while len(burst) < int(cwnd) and next_seq < total:
            burst.append(next_seq)
            next_seq += 1
        if not burst:
            t += rtt
            continue
        dropped, delivered_after_loss, first_ack = [], 0, None
        for i, seq in enumerate(burst):
            sent = t + i * MSS * 8 / LINE_BPS
            out = box.offer(sent + rtt / 2)  # the bottleneck sits at the receiver's end
            if out is None:
                dropped.append(seq)
                continue
            if dropped:
                delivered_after_loss += 1
            arrival.setdefault(seq, out)
            rtts.append((out + rtt / 2, out + rtt / 2 - sent))
            first_ack = first_ack if first_ack is not None else out + rtt / 2
        lost += dropped
        if not dropped:
            rto_backoff = 0
            cwnd = cwnd * 2 if cwnd < ssthresh else cwnd + 1
            cwnd = min(cwnd, 2000)
            t = first_ack if first_ack is not None else t + rtt
        elif delivered_after_loss >= 3 and first_ack is not None:
            ssthresh = max(cwnd / 2, 2)
            cwnd = ssthresh
            t = first_ack
        else:
            ssthresh = max(cwnd / 2, 2)
            cwnd = 1.0
            t += max(0.2, 2 * rtt) * 2**rto_backoff + rtt
            rto_backoff = min(rto_backoff + 1, 4)
    return _observe(arrival, rtts, retrans, rtt, total, seconds, direction)


def _observe(arrival: dict[int, float], rtts: list[tuple[float, float]], retrans: list[float],
             rtt: float, total: int, seconds: float, direction: str) -> Transfer:
    """What the probe records: in-order reads, 100 ms floor, TCP_INFO every 100 ms."""
    ready, t_prev = [], 0.0
    for seq in range(total):
        if seq not in arrival:
            break
        t_prev = max(t_prev, arrival[seq])  # the application sees bytes in order
        ready.append(t_prev)
    cut = [r for r in ready if r <= seconds]
    stopped_by = "complete" if len(cut) == total else "max_seconds"
    end = cut[-1] if stopped_by == "complete" else seconds
    samples: list[list[float]] = [[0.0, 0]]
    for i, r in enumerate(cut):
        nbytes = (i + 1) * MSS
        while r * 1000 - samples[-1][0] > 100:  # the probe samples at least every 100 ms
            samples.append([round(samples[-1][0] + 100, 3), samples[-1][1]])
        if samples[-1][0] == round(r * 1000, 3):
            samples[-1][1] = nbytes
        else:
            samples.append([round(r * 1000, 3), nbytes])
    while end * 1000 - samples[-1][0] > 100:
        samples.append([round(samples[-1][0] + 100, 3), samples[-1][1]])
    nbytes = samples[-1][1]
    snaps = []
    for k in range(int(end * 10) + 1):
        tk = k / 10
        done = sum(1 for r in cut if r <= tk) * MSS
        if direction == "up":
            seen = [s for (ta, s) in rtts if ta <= tk]
            srtt = seen[-1] if seen else rtt
            n_re = sum(1 for x in retrans if x <= tk)
            snaps.append({"t_ms": round(tk * 1000, 3), "rtt_us": int(srtt * 1e6),
                          "rttvar_us": int(srtt * 1e5), "min_rtt_us": int(rtt * 1e6),
                          "retransmits": 0, "total_retrans": n_re, "lost": 0,
                          "delivery_rate_bps": None, "bytes_received": 300,
                          "bytes_acked": done, "snd_cwnd": 10})
        else:
            snaps.append({"t_ms": round(tk * 1000, 3), "rtt_us": int(rtt * 1e6),
                          "rttvar_us": int(rtt * 5e5), "min_rtt_us": int(rtt * 1e6),
                          "retransmits": 0, "total_retrans": 0, "lost": 0,
                          "delivery_rate_bps": None, "bytes_received": done,
                          "bytes_acked": 300, "snd_cwnd": 10})
    return Transfer(samples=samples, tcp_info=snaps, bytes=nbytes, duration_s=round(end, 4),
                    retransmits=len(retrans), stopped_by=stopped_by)


# --- run folders -------------------------------------------------------------

TWITTER_HOSTS = {"image": "pbs.twimg.com", "video": "video.twimg.com", "script": "abs.twimg.com"}
CONTROL_HOSTS = {"image": "upload.wikimedia.org", "video": "commondatastorage.googleapis.com",
                 "script": "cdnjs.cloudflare.com"}


@dataclass
class Spec:
    """One target in a synthetic run: who it is and the network its transfers cross."""

    name: str
    family: str
    kind: str
    host: str
    path: Path_
    pair: str | None = None
    experiment: str = "target"
    sni: str | None = None  # None = the host
    direction: str = "down"
    fail: str | None = None  # dns | tcp | tls-reset | tls-cert | http: how it fails
    transport: str = "tcp"  # quic: the transfer over HTTP/3 (no TCP_INFO)


@dataclass
class RunSpec:
    targets: list[Spec]
    repeat: int = 3
    label: str | None = None
    start: dt.datetime = field(default_factory=lambda: dt.datetime(2021, 3, 12, 9, 0,
                                                                   tzinfo=dt.UTC))
    seed: int = 0
    seconds: float = 10.0
    max_bytes: int = 512 * 1024
    status: str = "complete"
    asn: str | None = None


def pairs(kinds: tuple[str, ...], twitter: Path_, control: Path_) -> list[Spec]:
    """Twitter targets and their paired controls, one of each kind."""
    out = []
    for kind in kinds:
        out.append(Spec(f"twitter-{kind}", "twitter", kind, TWITTER_HOSTS[kind], twitter,
                        pair=f"control-{kind}"))
        out.append(Spec(f"control-{kind}", "control", kind, CONTROL_HOSTS[kind], control))
    return out


def write_run(out: Path, spec: RunSpec) -> Path:
    """Write one run folder (run.json, measurements.jsonl, the CSVs); returns the folder."""
    run_id = f"{spec.start.strftime('%Y%m%dT%H%M%SZ')}-{spec.seed % 0xFFFFFF:06x}"
    folder = run_folder.create(out, run_id)
    info = run_folder.base_run_info(run_id, spec.start)
    info.update(options={"repeat": spec.repeat, "label": spec.label}, label=spec.label,
                targets=len(spec.targets), resolvers=[], target_files={})
    if spec.asn:
        info["asn"] = spec.asn
    done = []
    rng = random.Random(spec.seed)
    with JsonlWriter(folder / "measurements.jsonl") as writer:
        for rep in range(spec.repeat):
            for i, target in enumerate(spec.targets):
                started = spec.start + dt.timedelta(seconds=12 * (rep * len(spec.targets) + i))
                m = measurement(run_id, target, rep, started, rng.randrange(2**31), spec)
                writer.append(m)
                done.append(m)
    if spec.status == "complete":
        csvs.write_all(folder, done)
        info.update(end=run_folder.iso(spec.start + dt.timedelta(minutes=5)),
                    status="complete", measurements=len(done))
    else:  # killed: the JSONL is all there is
        info.update(status=spec.status)
    run_folder.write_run_json(folder, info)
    return folder


def measurement(run_id: str, spec: Spec, rep: int, started: dt.datetime, seed: int,
                run: RunSpec) -> dict:
    """One OONI-style envelope like probe.measurement.envelope builds."""
    mid = f"{run_id}-{seed:08x}"
    address = "192.0.2.10" if spec.family == "control" else "198.51.100.20"
    sni = spec.host if spec.sni is None else spec.sni
    keys: dict = {"queries": [], "tcp_connect": [], "tls_handshakes": [], "requests": [],
                  "network_events": [], "transfers": []}
    rtt = spec.path.rtt_ms
    bogus = spec.fail == "dns"
    keys["queries"].append({
        "engine": "udp", "resolver_address": "203.0.113.53", "resolver_port": 53,
        "hostname": spec.host, "query_type": "A", "rcode": "NOERROR", "failure": None,
        "answers": [{"answer_type": "A", "ipv4": "10.10.34.35" if bogus else address,
                     "ttl": 60}],
        "t0": 0.0, "t": 0.02, "latency_ms": 20.0, "cname_chain": [],
        "bogons": ["10.10.34.35"] if bogus else [],
    })
    failure = None
    # in the order the probe writes them (probe/measurement/context.py)
    extra = {"address": address, "dns_consistency": {"bogons": [], "inconsistent": False}}
    if bogus:
        failure = "dns_bogon_error"
        extra["address"] = None
    else:
        tcp_fail = "generic_timeout_error" if spec.fail == "tcp" else None
        keys["tcp_connect"].append({"ip": address, "port": 443, "t0": 0.02, "t": 0.06,
                                    "latency_ms": rtt,
                                    "status": {"success": tcp_fail is None, "failure": tcp_fail,
                                               "blocked": False}})
        failure = tcp_fail
    if failure is None:
        tls_fail = {"tls-reset": "connection_reset",
                    "tls-cert": "ssl_unknown_authority"}.get(spec.fail or "")
        keys["tls_handshakes"].append({
            "address": f"{address}:443", "server_name": sni, "tls_version": "TLSv1.3",
            "cipher_suite": "TLS_AES_128_GCM_SHA256", "negotiated_protocol": "http/1.1",
            "failure": tls_fail, "handshake_ms": 2 * rtt, "verified": tls_fail is None,
            "verify_error": "self-signed certificate in chain" if spec.fail == "tls-cert"
            else None, "t0": 0.06, "t": 0.15, "no_tls_verify": False,
            "certificates": [{"subject": f"CN={spec.host}", "issuer": "CN=Lab CA",
                              "sans": [spec.host], "sha256": "ab" * 32}],
        })
        failure = tls_fail
    if failure is None:
        tr = simulate(spec.path, seconds=run.seconds, max_bytes=run.max_bytes,
                      direction=spec.direction, seed=seed)
        http_fail = "connection_reset" if spec.fail == "http" else None
        nbytes = 0 if http_fail else tr.bytes
        dur = tr.duration_s
        tid = f"{mid}-1"
        keys["transfers"].append({
            "transfer_id": tid, "url": f"https://{spec.host}/object", "host": spec.host,
            "sni": sni, "address": address, "port": 443, "direction": spec.direction,
            "method": "POST" if spec.direction == "up" else "GET",
            "status_code": None if http_fail else 200, "bytes": nbytes,
            "wire_bytes": int(nbytes * 1.03), "duration_s": dur,
            "ttfb_ms": round(tr.samples[1][0], 3) if len(tr.samples) > 1 else None,
            "goodput_kbps": round(nbytes * 8 / 1000 / dur, 3) if dur > 0 else None,
            "stopped_by": "error" if http_fail else tr.stopped_by, "failure": http_fail,
            "connection_reused": False,
            "samples": [] if http_fail else tr.samples,
            "tcp_info": [] if http_fail or spec.transport == "quic" else tr.tcp_info,
            **({"transport": "quic"} if spec.transport == "quic" else {}),
        })
        failure = http_fail
    keys.update(extra)
    keys["failure"] = failure
    fmt = started.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "data_format_version": "0.2.0", "software_name": "throttle-probe",
        "software_version": "0.1.0", "test_name": "throttle_probe", "test_version": "0.1.0",
        "report_id": run_id, "run_id": run_id, "measurement_id": mid,
        "measurement_start_time": fmt, "test_start_time": fmt, "test_runtime": 1.0,
        "input": f"https://{spec.host}/object", "probe_asn": "AS0", "probe_cc": "ZZ",
        "probe_ip": "127.0.0.1", "annotations": {"experiment": spec.experiment},
        "target": {"name": spec.name, "url": f"https://{spec.host}/object", "host": spec.host,
                   "family": spec.family, "kind": spec.kind, "sni": spec.sni,
                   "connect_to": None, "pair": spec.pair},
        "repetition": rep, "experiment": spec.experiment, "test_keys": keys,
    }


# --- ready-made networks --------------------------------------------------------

FAST = Path_("clean", rate_kbps=20_000, rtt_ms=40)
POLICED = Path_("policed", rate_kbps=140, rtt_ms=40, burst_bytes=16_000)
SHAPED = Path_("shaped", rate_kbps=140, rtt_ms=40, buffer_pkts=60)


def policed_tcp_fast_quic() -> list[Spec]:
    """A Twitter target policed over TCP and fast over QUIC (HTTP/3), its control fetched
    both ways."""
    quic_ok = Path_("clean", rate_kbps=3_000, rtt_ms=40, buffer_pkts=40)
    return [Spec("tw", "twitter", "image", "pbs.twimg.com", POLICED, pair="ctl"),
            Spec("ctl", "control", "image", "ctl.test", FAST),
            Spec("tw", "twitter", "image", "pbs.twimg.com", quic_ok, pair="ctl",
                 experiment="target-h3", transport="quic"),
            Spec("ctl", "control", "image", "ctl.test", quic_ok, experiment="target-h3",
                 transport="quic")]


def congested(rate_kbps: float = 1500, rtt_ms: float = 60) -> Path_:
    """A busy shared link: capacity wanders around `rate_kbps`, 0.5 % random loss."""
    return Path_("congested", rate_kbps=rate_kbps, rtt_ms=rtt_ms, buffer_pkts=40,
                 loss=0.005, wander=0.35)


def copy_run(src: Path, out: Path, run_id: str, start: dt.datetime,
             asn: str | None = None) -> Path:
    """A copy of run folder `src` under a new run id, start time and ASN: many runs from a
    few simulated ones (for collection reports), at the cost of a file copy each."""
    folder = out / run_id
    folder.mkdir(parents=True)
    for f in src.iterdir():
        (folder / f.name).write_text(f.read_text().replace(src.name, run_id))
    info = json.loads((folder / "run.json").read_text())
    info["start"] = run_folder.iso(start)
    if asn:
        info["asn"] = asn
    run_folder.write_run_json(folder, info)
    return folder
