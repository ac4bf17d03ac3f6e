"""`probe analyze report`: a self-contained HTML page and its Markdown twin.

Written for a reader who never saw the tool: every section says in one
sentence what it shows and how to read it. The HTML embeds its figures as
base64 PNGs (one file to mail or archive); the Markdown links PNGs written
beside it. Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from probe.escape import for_html, for_markdown, for_plot  # noqa: E402
from probe.names import is_service_family  # noqa: E402
from probe.results.atomic import write_bytes, write_text  # noqa: E402

from .load import Results  # noqa: E402
from .rates import as_arrays  # noqa: E402
from .transports import across_lines  # noqa: E402
from .verdicts import rate_series, transfer_table, verdicts  # noqa: E402

BIN_S = 0.5  # plot bins; a transfer shorter than 8 bins gets 8 finer ones
MAX_SERIES = 12  # transfers per family in the throughput-over-time plot
MAX_STEPS = 2000  # per line: 1200 half-second steps cover the probe's longest transfer
COLORS = {"twitter": "#d62728", "control": "#1f77b4", "youtube": "#ff7f0e",
          "facebook": "#9467bd"}
VERDICT_COLUMNS = ["run_id", "target", "experiment", "transport", "verdict", "trigger", "rate_kbps",
                   "control_rate_kbps", "ratio", "p_value", "explanation"]
# Beyond this many verdicts the page would grow by megabytes; the CSV lists them instead.
MAX_VERDICT_ROWS = 2000


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    png: bytes


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _color(family: object) -> str:
    return COLORS.get(str(family), "#7f7f7f")


def throughput_figure(r: Results, table: pd.DataFrame, rows: pd.DataFrame) -> Figure | None:
    """Rate over time of Twitter and control transfers in the run with the most throttling."""
    main = table[(table["experiment"] == "target") & table["rate_kbps"].notna()]
    if not len(main):
        return None
    counts = rows[rows["verdict"] == "throttled"].groupby("run_id").size()
    run_id = counts.idxmax() if len(counts) else main["run_id"].iloc[0]
    main = main[main["run_id"] == run_id]
    # the wire count where recorded: TLS releases the body in steps
    by_id = rate_series(r.for_runs([run_id]))
    fig, ax = plt.subplots(figsize=(8, 4))
    for family, g in main.groupby("family"):
        for i, t in enumerate(g.itertuples()):
            if i >= MAX_SERIES or t.transfer_id not in by_id:
                continue
            ts, b = as_arrays(by_id[t.transfer_id])
            width = BIN_S if ts[-1] >= 8 * BIN_S else max(ts[-1] / 8, 0.005)
            width = max(width, ts[-1] / MAX_STEPS)  # a clock jump of days is still drawable
            edges = np.arange(0, ts[-1] + 1e-9, width)
            if len(edges) < 2:
                continue
            kbps = np.diff(np.interp(edges, ts, b)) * 8 / 1000 / width
            ax.step(edges[1:], np.maximum(kbps, 1), where="pre", color=_color(family),
                    alpha=0.6, lw=1, label=for_plot(family) if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the request")
    ax.set_ylabel("throughput (kbit/s)")
    ax.axhspan(130, 150, color="#ff9896", alpha=0.3, label="130-150 kbit/s (2021 throttle)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"Throughput over time, run {for_plot(run_id)}")
    return Figure("throughput", "Throughput over time: Twitter vs control",
                  "Each line is one transfer's throughput in half-second steps (finer for "
                  "short transfers; log scale): "
                  "throttled Twitter transfers sit flat near a fixed low rate (a saw-tooth if "
                  "policed) while controls on the same network run much faster.", _png(fig))


def cdf_figure(table: pd.DataFrame) -> Figure | None:
    """Distribution of steady-state rates per family, all runs."""
    main = table[(table["experiment"] == "target") & table["rate_kbps"].notna()]
    if not len(main):
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for family, g in main.groupby("family"):
        x = np.sort(g["rate_kbps"].clip(lower=1).to_numpy(float))
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=_color(family),
                label=f"{for_plot(family)} ({len(x)} transfers)")
    ax.set_xscale("log")
    ax.set_xlabel("steady-state rate (kbit/s, log scale)")
    ax.set_ylabel("share of transfers at or below")
    ax.axvspan(130, 150, color="#ff9896", alpha=0.3, label="130-150 kbit/s")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("CDF of transfer rates")
    return Figure("cdf", "Distribution of rates (CDF)",
                  "For each family, the share of transfers (y) whose steady-state rate is at "
                  "or below x: when Twitter is throttled its curve rises steeply at a low rate "
                  "far to the left of the controls' curve.", _png(fig))


def timeline_figure(table: pd.DataFrame, rows: pd.DataFrame) -> Figure | None:
    """Median rate per run and family over time, throttled runs marked."""
    main = table[(table["experiment"] == "target") & table["rate_kbps"].notna()].copy()
    if not len(main):
        return None
    main["start"] = pd.to_datetime(main["measurement_start_time"], utc=True)
    per_run = main.groupby(["run_id", "family"]).agg(start=("start", "min"),
                                                     rate=("rate_kbps", "median")).reset_index()
    per_run["rate"] = per_run["rate"].clip(lower=1)  # log scale: a stalled run sits at 1
    throttled = set(rows.loc[rows["verdict"] == "throttled", "run_id"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for family, g in per_run.groupby("family"):
        g = g.sort_values("start")
        ax.plot(g["start"], g["rate"], "o-", color=_color(family), ms=4, lw=1,
                label=for_plot(family))
        hit = g[g["run_id"].isin(throttled)]
        if is_service_family(family) and len(hit):
            ax.plot(hit["start"], hit["rate"], "x", color="black", ms=8,
                    label="run with a throttled verdict")
    ax.set_yscale("log")
    ax.set_ylabel("median rate (kbit/s)")
    ax.set_title("Rates across runs")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return Figure("timeline", "Timeline across runs",
                  "Each point is one run's median steady-state rate for a family, by the time "
                  "the run started: a throttle appears as the Twitter line dropping far below "
                  "the control line from the day it begins.", _png(fig))


def _summary(r: Results, rows: pd.DataFrame) -> str:
    runs = r.runs
    counts = rows["verdict"].value_counts().to_dict() if len(rows) else {}
    span = ""
    if len(runs) and runs["start"].notna().any():
        span = (f" from {runs['start'].min():%Y-%m-%d %H:%M} to "
                f"{runs['start'].max():%Y-%m-%d %H:%M} UTC")
    verdict_words = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "none"
    skipped = ""
    if r.skipped:  # a reader of the report must know lines were left out, not only the terminal
        files = len({s.path for s in r.skipped})
        skipped = (f" {len(r.skipped)} malformed line(s) in {files} file(s) were left out "
                   "(the command's warnings name each file and line).")
    return (f"{len(runs)} run(s){span}; {len(rows)} verdict(s): {verdict_words}.{skipped}")


INTRO = ("This report compares how fast Twitter objects downloaded with how fast comparable "
         "control objects on unrelated servers downloaded, measured interleaved on the same "
         "network. A target is 'throttled' only when it is much slower than its controls "
         "(ratio at most 0.5, with a 95 % bootstrap interval below 0.7 and p <= 0.01), the "
         "controls themselves are fast and steady, and the target's rate is flat like a "
         "fixed limit, or stays under a ceiling where no second of it comes within 4x of "
         "the controls, rather than wandering like congestion. A slow network is never called "
         "throttling: it yields 'inconclusive'.")
VERDICT_HELP = ("One row per target and run. rate and control rate are median steady-state "
                "rates in kbit/s (past TCP slow start); ratio is their quotient; p is the "
                "bootstrap p-value of 'the target runs at 0.7x its controls or faster' (small: "
                "surely slower by more than 30 %); trigger says what "
                "sets off the throttle when the run carried the differential experiments "
                "(sni: the TLS server name; ip: the destination; quic: QUIC itself, whatever "
                "the name). transport: tcp, or quic for a fetch over HTTP/3, judged against "
                "controls fetched over HTTP/3 too.")
ACROSS_HELP = ("Targets fetched over both TCP and QUIC (HTTP/3) whose two verdicts differ, or "
               "that were throttled over both: a throttler may treat the transports apart "
               "(in 2024 YouTube was slowed to ~128 kbit/s over TCP, ~512 over QUIC).")


CAMPAIGN_HELP = ("Service targets of the main experiment, per network (the run's ASN, "
                 "else its label), UTC day and service (twitter, youtube, ...). runs: runs "
                 "behind the figures; judged: targets "
                 "found ok or throttled (inconclusive and failed ones are left out of the "
                 "share); share_throttled: throttled / judged, with its 95 % Wilson "
                 "interval (ci_low-ci_high: wide when few runs stand behind it); the median "
                 "throttled rate is in kbit/s.")


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"
    return str(v)


def _html_table(df: pd.DataFrame, columns: list[str], row_class: str | None = None) -> str:
    head = "".join(f"<th>{for_html(c)}</th>" for c in columns)
    body = "".join(
        (f'<tr class="{for_html(row[row_class])}">' if row_class else "<tr>")
        + "".join(f"<td>{for_html(_cell(row[c]))}</td>" for c in columns) + "</tr>"
        for _, row in df.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _md_table(df: pd.DataFrame, columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(for_markdown(_cell(row[c])) for c in columns) + " |")
    return lines


def _too_many(rows: pd.DataFrame) -> str | None:
    """Why the verdict table is left out, when it is."""
    if len(rows) <= MAX_VERDICT_ROWS:
        return None
    return (f"{len(rows)} verdicts are too many to list here (at most {MAX_VERDICT_ROWS}): "
            "`probe analyze verdicts` with `--format csv` lists them all.")


def _html(summary: str, rows: pd.DataFrame, figures: list[Figure],
          campaign: pd.DataFrame | None = None) -> str:
    figs = "".join(
        f"<h2>{for_html(f.title)}</h2><p>{for_html(f.caption)}</p>"
        f'<img alt="{for_html(f.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(f.png).decode()}">' for f in figures)
    per_network = "" if campaign is None else (
        f"<h2>Per network and day</h2><p>{for_html(CAMPAIGN_HELP)}</p>"
        + _html_table(campaign, list(campaign.columns)))
    too_many = _too_many(rows)
    listed = (f"<p>{for_html(too_many)}</p>" if too_many
              else _html_table(rows, VERDICT_COLUMNS, "verdict"))
    lines = across_lines(rows)
    across = "" if not lines else (
        f"<h2>Across transports</h2><p>{for_html(ACROSS_HELP)}</p><ul>"
        + "".join(f"<li>{for_html(line)}</li>" for line in lines) + "</ul>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Throttling report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px}}
tr.throttled{{background:#fdd}}tr.ok{{background:#efe}}tr.inconclusive{{background:#ffd}}
img{{max-width:100%}}</style></head><body>
<h1>Throttling report</h1><p>{for_html(INTRO)}</p><p>{for_html(summary)}</p>{per_network}
{across}<h2>Verdicts</h2><p>{for_html(VERDICT_HELP)}</p>
{listed}{figs}
</body></html>
"""


def _markdown(summary: str, rows: pd.DataFrame, figures: list[Figure], stem: str,
              campaign: pd.DataFrame | None = None) -> str:
    lines = ["# Throttling report", "", INTRO, "", summary, ""]
    if campaign is not None:
        lines += ["## Per network and day", "", CAMPAIGN_HELP, "",
                  *_md_table(campaign, list(campaign.columns)), ""]
    across = across_lines(rows)
    if across:
        lines += ["## Across transports", "", ACROSS_HELP, "",
                  *(f"- {for_markdown(line)}" for line in across), ""]
    too_many = _too_many(rows)
    lines += ["## Verdicts", "", VERDICT_HELP, "",
              *([for_markdown(too_many)] if too_many else _md_table(rows, VERDICT_COLUMNS))]
    for f in figures:
        lines += ["", f"## {f.title}", "", f.caption, "", f"![{f.title}]({stem}-{f.name}.png)"]
    return "\n".join(lines) + "\n"


def write_report(r: Results, out: Path, rows: pd.DataFrame | None = None,
                 table: pd.DataFrame | None = None,
                 campaign: pd.DataFrame | None = None) -> list[Path]:
    """Write OUT (HTML), OUT with .md and the PNGs beside it; returns the paths written.

    `rows` (verdicts) and `table` (transfer_table) are derived from `r` unless given,
    e.g. as a dataset stored them; `campaign` (a dataset's per network and day figures,
    analysis.store.query.campaign) adds a section of them.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = verdicts(r) if rows is None else rows
    table = transfer_table(r) if table is None else table
    figures = [f for f in (throughput_figure(r, table, rows) if len(table) else None,
                           cdf_figure(table) if len(table) else None,
                           timeline_figure(table, rows) if len(table) else None) if f]
    summary = _summary(r, rows)
    written = []
    for f in figures:
        path = out.with_name(f"{out.stem}-{f.name}.png")
        write_bytes(path, f.png)
        written.append(path)
    md = out.with_suffix(".md")
    write_text(md, _markdown(summary, rows, figures, out.stem, campaign))
    write_text(out, _html(summary, rows, figures, campaign))
    return [out, md, *written]
