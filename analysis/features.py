"""Each measurement boiled down to what a verdict needs: the step that failed, the rate
of its longest transfer (steady state past slow start, else goodput), the 250 ms bins the
bootstrap resamples, the fastest steady second and the shape (policing, shaping).

Plain records, not pandas rows: a verdict over thousands of measurements looks at each
one many times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .load import Results
from .missing import or_none
from .rates import as_arrays, bin_rates, estimate, steady_window
from .signature import signature
from .thresholds import BIN_S, BLOCK_BINS, MAX_BOOT_BINS, MIN_BYTES, PEAK_WINDOW_S

CERT_FAILURES = ("ssl_unknown_authority", "ssl_invalid_hostname", "ssl_invalid_certificate")
# Experiments made over QUIC only: their transport is known even when DNS failed and no
# transfer says it.
QUIC_EXPERIMENTS = ("target-h3", "sni-h3")


@dataclass
class _Rep:
    """One measurement boiled down: its stage, rate, bins and shape."""

    measurement_id: str
    target: str
    family: str | None
    kind: str | None
    host: str | None
    sni: str | None
    experiment: str
    direction: str
    stage: str  # ok | dns | tcp | tls-reset | tls-cert | http
    rate: float | None = None
    bins: np.ndarray | None = None
    shape: str | None = None
    flat: bool | None = None
    steady: bool = False  # rate from a steady-state window, not a sub-second goodput
    status: int | None = None  # HTTP status of the main transfer
    peak: float | None = None  # kbit/s of its fastest steady second (90th percentile)
    note: str | None = None  # a step that could not be computed, and why
    transport: str = "tcp"  # tcp | quic (HTTP/3)
    offers_h3: bool | None = None  # its main transfer's answer offered HTTP/3 (Alt-Svc)


def _rows_of(table: pd.DataFrame) -> Callable[[str], pd.DataFrame | None]:
    """measurement_id -> its rows of `table` (None if it has none), found by index."""
    where = table.groupby("measurement_id", sort=False).indices if len(table) else {}
    return lambda mid: table.iloc[where[mid]] if mid in where else None


def _stage(m: dict, dns: pd.DataFrame | None, tcp: pd.DataFrame | None,
           tls: pd.DataFrame | None, quic: bool = False) -> str:
    """Which step failed a measurement that moved no usable data. QUIC has no TCP connect:
    its handshake is the first step after DNS."""
    if dns is not None and len(dns) and dns["bogons"].fillna("").ne("").any():
        return "dns"
    tried = tls if quic else tcp
    if tried is None or not len(tried):  # nothing was connected to: DNS gave no address
        failure = str(m.get("failure") or "")
        asked = dns is not None and len(dns) > 0
        return "dns" if asked or failure.startswith("dns_") or not failure else "tcp"
    if not quic and not tried["success"].fillna(False).astype(bool).any():
        return "tcp"
    if tls is not None and len(tls):
        failures = tls["failure"].dropna()
        if failures.isin(CERT_FAILURES).any():
            return "tls-cert"
        if len(failures) and not tls["failure"].isna().any():
            return "tls-reset"
    return "http"


def rate_series(r: Results) -> dict[str, np.ndarray]:
    """Per transfer, the (t_ms, cumulative bytes) series to judge its rate on.

    The kernel's wire count (tcpinfo.csv `wire_bytes`, every 100 ms) where the
    probe recorded it, else the body samples: TLS releases the body in whole
    records of up to 16 KiB, a staircase with one step a second at 130 kbit/s.
    """
    series = _split_by_transfer(r.samples, "bytes")
    info = r.tcpinfo
    if "wire_bytes" in info.columns:
        wire = _split_by_transfer(info.dropna(subset=["wire_bytes"]), "wire_bytes")
        series.update({k: v for k, v in wire.items() if len(v) >= 3})
    return series


def _split_by_transfer(table: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
    """{transfer_id: (t_ms, column) rows sorted by time}, sliced from one sorted array
    (a pandas groupby that builds a frame per transfer costs 10x more)."""
    ordered = table.sort_values(["transfer_id", "t_ms"], kind="stable")
    keys = ordered["transfer_id"].to_numpy()
    values = ordered[["t_ms", column]].to_numpy(float)
    if not len(keys):
        return {}
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(keys)]
    return {keys[a]: values[a:b] for a, b in zip(starts, ends, strict=True)}


def _sender_tcpinfo(r: Results) -> dict[str, list[dict]]:
    """TCP_INFO snapshots of uploads only: on a download the probe's kernel sees no losses."""
    up = set(r.transfers.loc[r.transfers["direction"] == "up", "transfer_id"])
    if not up:
        return {}
    info = r.tcpinfo[r.tcpinfo["transfer_id"].isin(up)]
    return {k: g.to_dict("records") for k, g in info.groupby("transfer_id", sort=False)}


def _reps(r: Results) -> list[_Rep]:
    """Every measurement boiled down (plain records here: per-row pandas is too slow)."""
    tr = r.transfers
    samples = rate_series(r)
    tcpinfo = _sender_tcpinfo(r)
    by_m: dict[str, list[dict]] = {}
    for t in tr.to_dict("records"):
        by_m.setdefault(t["measurement_id"], []).append(t)
    # Row positions per measurement; the rows are only looked at for failures.
    dns, tcp, tls = (_rows_of(t) for t in (r.dns, r.tcp, r.tls))
    ms = r.measurements
    if not len(ms):  # no JSONL: the measurements the CSVs know of
        ms = tr.drop_duplicates("measurement_id").assign(pair=None, failure=None)
    reps = []
    for m in ms.to_dict("records"):
        mid = m["measurement_id"]
        trs = by_m.get(mid, [])
        main, direction = None, "up" if m.get("experiment") == "upload" else "down"
        directions = [t["direction"] for t in trs if not pd.isna(t["direction"])]
        if directions:
            direction = str(directions[0])
        # A transfer cut by an error still measured a rate until then, if it moved enough.
        ok = [t for t in trs if t["bytes"] > 0
              and (pd.isna(t["failure"]) or t["bytes"] >= MIN_BYTES)]
        big = [t for t in ok if t["bytes"] >= MIN_BYTES]
        if big:  # the longest window to read a rate off: under a throttle that starts
            # after the first KB, a later segment; ties go to the largest, then the first
            main = max(big, key=lambda t: (0.0 if pd.isna(t["duration_s"]) else
                                           float(t["duration_s"]), t["bytes"]))
        elif ok:
            main = max(ok, key=lambda t: t["bytes"])  # the first of the largest
        sni = m.get("sni")
        if main is not None and not pd.isna(main["sni"]):
            sni = main["sni"]
        elif sni is None or pd.isna(sni):
            sni = m.get("host")
        rep = _Rep(mid, m["target"], or_none(m.get("family"), str),
                   or_none(m.get("kind"), str), or_none(m.get("host"), str),
                   or_none(sni, str), or_none(m.get("experiment"), str) or "target",
                   or_none(main["direction"], str) if main is not None else direction, "ok")
        rep.transport = _transport(rep.experiment, trs)
        if main is None:
            rep.stage = _stage(m, dns(mid), tcp(mid), tls(mid), rep.transport == "quic")
        if main is not None and not pd.isna(main["status_code"]):
            rep.status = int(main["status_code"])
            rep.offers_h3 = or_none(main.get("alt_svc_h3"),
                                    lambda cell: cell is True or str(cell).lower() == "true")
        if main is not None and main["bytes"] >= MIN_BYTES:
            s = samples.get(main["transfer_id"])
            _rate_into(rep, main, s, tcpinfo.get(main["transfer_id"], []))
        reps.append(rep)
    return reps


def _transport(experiment: str, transfers: list[dict]) -> str:
    """quic when the measurement's transfers went over QUIC; without any (DNS failed), when
    its experiment is made over QUIC only. Folders before QUIC have no column: tcp."""
    if any(t.get("transport") == "quic" for t in transfers):
        return "quic"
    return "quic" if not transfers and experiment in QUIC_EXPERIMENTS else "tcp"


def _rate_into(rep: _Rep, transfer: dict, s: np.ndarray | None, tcp_info: list) -> None:
    """Fill `rep`'s rate, bootstrap bins and shape from its main transfer: the steady-state
    rate when the transfer had a steady window of a second or more, else its goodput."""
    if s is None or len(s) < 2:
        rep.rate = float(transfer["goodput_kbps"]) if not pd.isna(transfer["goodput_kbps"]) \
            else None
        rep.bins = None if rep.rate is None else np.array([rep.rate])
        return
    est = estimate(s)
    rep.steady = est.window_s >= 1.0
    rep.rate = est.rate_kbps if rep.steady else est.goodput_kbps
    t, b = as_arrays(s)
    window = steady_window(t, b)
    bins = np.zeros(0)
    if window and est.window_s >= 1.0:
        n = int((window[1] - window[0]) // BIN_S)
        if n > MAX_BOOT_BINS:  # a clock jump: a bootstrap over millions of bins cannot be held
            rep.note = (f"a steady window of {window[1] - window[0]:.3g} s, longer than any "
                        "transfer, was bootstrapped as one value")
        elif n >= 2 * BLOCK_BINS:
            edges = window[1] - BIN_S * np.arange(n, -1, -1)
            bins = np.diff(np.interp(edges, t, b)) * 8 / 1000 / BIN_S
    rep.bins = bins if len(bins) else (None if rep.rate is None else np.array([rep.rate]))
    if window and rep.steady:
        seconds = bin_rates(t, b, window[0], window[1], PEAK_WINDOW_S)
        rep.peak = float(np.percentile(seconds, 90)) if len(seconds) else rep.rate
    sig = signature(s, tcp_info, rep.direction)
    rep.shape, rep.flat = sig.kind, sig.plateau.flat
