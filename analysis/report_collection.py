"""The report of a collection: many runs from many volunteers, read per network and day.

A per-row report of 10,000 runs is a page of 40,000 verdicts nobody reads (and of
megabytes). This one shows, per network (ASN, else label) and UTC day, the throttled
share with its 95% Wilson interval, the median throttled rate and the number of runs
behind each figure; a timeline with the change points of each network's daily share
(analysis.changepoint, the detector of the 2021 dataset report); and a short list of
runs worth a closer look, whose per-row detail `report --run ID` writes.

Its size does not grow with the number of runs: tables are aggregated and capped (a
capped table says how many rows it leaves out and where to find them), names are
shortened, and the one figure has a fixed size and DPI. It is built from DataFrames
only (verdict rows and runs), whether they come from run folders or a dataset.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.escape import for_html, for_markdown, for_plot, visible
from probe.results.atomic import write_all

from .aggregate import aggregate, main_rows, wilson, with_intervals
from .changepoint import ChangePoint, detect

# More runs than this and `report` writes the collection report (unless --run is given).
COLLECTION_THRESHOLD = 20
MAX_NETWORKS = 40  # rows of the per-network table
MAX_DAY_ROWS = 300  # rows of the per-network-and-day table
MAX_CHANGES = 40  # rows of the change-point table
MAX_RUNS = 20  # runs listed as worth a closer look
LINES = 6  # networks drawn in the timeline (those with the most runs)
NAME_CHARS = 48  # a network or run id is shortened to this many characters
DPI = 100


@dataclass(frozen=True)
class Table:
    """A titled table, every cell already a plain string (escaped by each writer)."""

    title: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    total: int  # rows before the cap


def _short(text: object) -> str:
    """A name as shown: control characters made visible, then cut to NAME_CHARS."""
    s = visible(text)
    return s if len(s) <= NAME_CHARS else s[: NAME_CHARS - 1] + "…"


def _pct(x: object) -> str:
    return "-" if x is None or pd.isna(x) else f"{100 * float(x):.0f}%"


def _kbps(x: object) -> str:
    return "-" if x is None or pd.isna(x) else f"{float(x):.0f}"


def _interval(low: object, high: object) -> str:
    return "-" if low is None or pd.isna(low) else f"{_pct(low)}–{_pct(high)}"


def _run_shares(v: pd.DataFrame) -> pd.DataFrame:
    """Per network and day: k = sum over runs of each run's throttled share of its judged
    Twitter targets, n = runs with a judged target. A run, not a target, is the unit the
    change-point detector counts: targets of one run share its network and moment."""
    judged = v[v["verdict"].isin(["throttled", "ok"])]
    per_run = (judged["verdict"] == "throttled").groupby(
        [judged["network"], judged["day"], judged["run_id"]]).mean()
    return pd.DataFrame({"k": per_run.groupby(level=[0, 1]).sum(),
                         "n": per_run.groupby(level=[0, 1]).size()})


def _changes(shares: pd.DataFrame) -> dict[str, list[tuple[pd.Timestamp, ChangePoint]]]:
    """Change points of each network's daily run share, days without runs as gaps."""
    out: dict[str, list[tuple[pd.Timestamp, ChangePoint]]] = {}
    for network, g in shares.groupby(level=0):
        g = g.droplevel(0)
        g = g[g.index != "unknown"]
        if len(g) < 2:
            continue
        g.index = pd.to_datetime(g.index)
        days = pd.date_range(g.index.min(), g.index.max(), freq="D")
        g = g.reindex(days, fill_value=0)
        found = detect(g["k"].to_numpy(), g["n"].to_numpy())
        if found:
            out[str(network)] = [(days[c.index], c) for c in found]
    return out


@dataclass
class Collection:
    """What the report shows, computed once for both writers."""

    days: pd.DataFrame  # aggregate's rows with Wilson intervals
    per_network: pd.DataFrame
    changes: dict[str, list[tuple[pd.Timestamp, ChangePoint]]]
    runs: int
    verdicts: dict[str, int]
    span: tuple[str, str] | None
    worth_a_look: pd.DataFrame


def _per_service(df: pd.DataFrame) -> pd.DataFrame:
    """`df` whose series are per network and service: the network's name with the
    service's (a network slowing Twitter and not YouTube shows two lines, not a mean)."""
    return df.assign(network=df["network"].astype(str) + " " + df["service"].astype(str))


def collect(verdict_rows: pd.DataFrame, runs: pd.DataFrame) -> Collection:
    """Everything the page shows, from verdict rows and the runs they came from; with
    several services measured, each network's figures are per service."""
    days = with_intervals(aggregate(verdict_rows, runs))
    v = main_rows(verdict_rows, runs) if len(verdict_rows) and len(runs) else None
    if v is not None and v["service"].nunique() > 1:
        days, v = _per_service(days), _per_service(v)
    dated = days[days["day"] != "unknown"]["day"]
    span = (dated.min(), dated.max()) if len(dated) else None
    if v is None or not len(v):
        empty = pd.DataFrame(columns=["network", "runs", "days", "throttled", "ok",
                                      "median_throttled_kbps"])
        return Collection(days, empty, {}, len(runs), {}, span,
                          pd.DataFrame(columns=["run_id", "network", "day", "throttled",
                                                "targets"]))
    thr = v["verdict"] == "throttled"
    per_network = pd.DataFrame({
        "runs": v.groupby("network")["run_id"].nunique(),
        "days": v.groupby("network")["day"].nunique(),
        "throttled": thr.groupby(v["network"]).sum(),
        "ok": (v["verdict"] == "ok").groupby(v["network"]).sum(),
        "median_throttled_kbps": v.loc[thr].groupby("network")["rate_kbps"].median(),
    }).reset_index().sort_values(["runs", "network"], ascending=[False, True])
    per_run = pd.DataFrame({"throttled": thr.groupby(v["run_id"]).sum(),
                            "targets": v.groupby("run_id").size()}).reset_index()
    meta = v.drop_duplicates("run_id")[["run_id", "network", "day"]]
    look = per_run[per_run["throttled"] > 0].merge(meta, on="run_id").sort_values(
        ["day", "throttled", "run_id"], ascending=[False, False, True])
    return Collection(days, per_network, _changes(_run_shares(v)), len(runs),
                      v["verdict"].value_counts().to_dict(), span, look)


# ------------------------------------------------------------------ figure


def timeline_figure(c: Collection) -> bytes | None:
    """Daily throttled share (95% band), median throttled rate and runs per day of the
    networks with the most runs; detected change points dotted."""
    days = c.days[c.days["day"] != "unknown"].copy()
    top = [n for n in c.per_network["network"] if n in set(days["network"])][:LINES]
    if not top:
        return None
    days["date"] = pd.to_datetime(days["day"])
    fig = Figure(figsize=(10, 8))
    FigureCanvasAgg(fig)
    share_ax, rate_ax, runs_ax = fig.subplots(3, 1, sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2, 1.4]})
    for i, network in enumerate(top):
        color = f"C{i}"
        g = days[days["network"] == network].sort_values("date")
        label = for_plot(_short(network))
        judged = g[g["share_throttled"].notna()]
        share_ax.plot(judged["date"], judged["share_throttled"].astype(float), "o-", ms=3,
                      lw=1, color=color, label=label)
        share_ax.fill_between(judged["date"], judged["share_low"].astype(float),
                              judged["share_high"].astype(float), color=color, alpha=0.15)
        rated = g[g["median_throttled_kbps"].notna()]
        rate_ax.plot(rated["date"], rated["median_throttled_kbps"].astype(float), "o-", ms=3,
                     lw=1, color=color)
        runs_ax.plot(g["date"], g["runs"], drawstyle="steps-mid", lw=1, color=color)
        for when, _ in c.changes.get(str(network), []):
            for ax in (share_ax, rate_ax, runs_ax):
                ax.axvline(when, color=color, ls=":", lw=1.5)
    share_ax.set_ylim(-0.03, 1.03)
    share_ax.set_ylabel("throttled share\n(band: 95% interval)")
    share_ax.set_title("Per network and day (dotted: detected change point)")
    share_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rate_ax.set_ylabel("median throttled\nrate (kbit/s)")
    rate_ax.axhspan(130, 150, color="#ff9896", alpha=0.3)
    runs_ax.set_ylabel("runs")
    runs_ax.set_ylim(bottom=0)
    for ax in (share_ax, rate_ax, runs_ax):
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ------------------------------------------------------------------ tables


def _capped(rows: list[list[str]], cap: int) -> tuple[list[list[str]], int]:
    return rows[:cap], len(rows)


def tables(c: Collection) -> list[Table]:
    """The page's tables, shared by the HTML and Markdown writers."""
    change_cells = {n: "; ".join(f"{w:%Y-%m-%d}: {_pct(cp.before_share)} → "
                                 f"{_pct(cp.after_share)}" for w, cp in found)
                    for n, found in c.changes.items()}
    nets = []
    for r in c.per_network.itertuples():
        ci = wilson(int(r.throttled), int(r.throttled) + int(r.ok))
        nets.append([_short(r.network), str(r.runs), str(r.days),
                     _pct(r.throttled / (r.throttled + r.ok)) if r.throttled + r.ok else "-",
                     _interval(*ci) if ci else "-", _kbps(r.median_throttled_kbps),
                     change_cells.get(str(r.network), "none")])
    changes = [[_short(n), f"{w:%Y-%m-%d}", _pct(cp.before_share), _pct(cp.after_share),
                str(cp.before_n), str(cp.after_n), f"{cp.statistic:.1f}"]
               for n, found in c.changes.items() for w, cp in found]
    order = {n: i for i, n in enumerate(c.per_network["network"])}
    days = c.days.assign(_o=c.days["network"].map(order)).sort_values(["_o", "day"])
    day_rows = [[_short(r.network), str(r.day), str(r.runs), str(r.throttled + r.ok),
                 _pct(r.share_throttled), _interval(r.share_low, r.share_high),
                 _kbps(r.median_throttled_kbps)] for r in days.itertuples()]
    look = [[_short(r.run_id), _short(r.network), str(r.day), f"{r.throttled} of {r.targets}"]
            for r in c.worth_a_look.itertuples()]
    out = []
    for title, caption, header, rows, cap in (
        ("Networks", "One row per network, the most runs first: runs and days with "
         "measurements, the throttled share of its judged Twitter targets with its 95% "
         "Wilson interval, the median rate of the throttled ones, and the detected change "
         "points of its daily share (first day of the new level: share before → after).",
         ["network", "runs", "days", "throttled share", "95% interval",
          "median throttled kbit/s", "change points"], nets, MAX_NETWORKS),
        ("Change points", "Days on which a network's daily share of throttled runs changed "
         "level (binary segmentation of binomial counts, a run counted once, at least 3 days "
         "with runs and 10 runs a side, a change of 20 points or more): share before and "
         "after, runs before and after, and the test statistic.",
         ["network", "first day", "share before", "share after", "runs before",
          "runs after", "statistic"], changes, MAX_CHANGES),
        ("Per network and day", "The figures behind the timeline: runs that day, judged "
         "Twitter targets (throttled or ok; inconclusive and failed ones are left out of the "
         "share), the throttled share with its 95% Wilson interval and the median throttled "
         "rate. The command probe analyze aggregate lists every row.",
         ["network", "day", "runs", "judged targets", "throttled share", "95% interval",
          "median throttled kbit/s"], day_rows, MAX_DAY_ROWS),
        ("Runs worth a look", "Runs with at least one throttled Twitter target, the latest "
         "first: probe analyze report FOLDERS --run ID -o run.html writes one's verdicts, "
         "throughput over time and rate distributions.",
         ["run", "network", "day", "throttled targets"], look, MAX_RUNS),
    ):
        shown, total = _capped(rows, cap)
        out.append(Table(title, caption, header, shown, total))
    return out


def _left_out(t: Table) -> str:
    return (f"Showing the first {len(t.rows)} of {t.total} rows."
            if t.total > len(t.rows) else "")


INTRO = ("This report reads a collection of runs, by many volunteers on many networks, per "
         "network (the run's ASN, else its label) and UTC day. A Twitter target is judged "
         "throttled or ok in each run as in the per-run report; the throttled share is "
         "throttled / (throttled + ok), inconclusive and failed targets left out, with a 95% "
         "Wilson interval that is wide when few runs stand behind it.")


def _summary(c: Collection, skipped: int) -> str:
    span = f" from {c.span[0]} to {c.span[1]}" if c.span else ""
    words = ", ".join(f"{n} {v}" for v, n in sorted(c.verdicts.items())) or "none"
    left = (f" {skipped} malformed line(s) were left out (the command's warnings name each "
            "file and line)." if skipped else "")
    return (f"{c.runs} run(s) on {len(c.per_network)} network(s){span}; Twitter targets: "
            f"{words}.{left}")


FIGURE_TITLE = "Timeline"
FIGURE_CAPTION = (f"The {LINES} networks with the most runs, per day: the throttled share "
                  "with its 95% interval as a band (top), the median rate of throttled "
                  "targets against the 2021 throttle's 130-150 kbit/s (middle), and the "
                  "runs behind each day's figures (bottom). A dotted line marks a detected "
                  "change point, in the network's colour.")
_CSS = """body{font-family:system-ui,sans-serif;max-width:75em;margin:1.5em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
td,th{border:1px solid #ccc;padding:.2em .45em;text-align:left}th{background:#f3f3f3}
img{max-width:100%}.note{color:#555}"""


def render_html(c: Collection, png: bytes | None, skipped: int = 0,
                run_report: str | None = None) -> str:
    """The self-contained page (its figure inlined)."""
    e = for_html
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>Throttling report: collection</title>",
             f"<style>{_CSS}</style></head><body>",
             "<h1>Throttling report: collection</h1>",
             f"<p>{e(INTRO)}</p><p>{e(_summary(c, skipped))}</p>"]
    if run_report:
        parts.append(f"<p>Per-run detail of the chosen runs: <a href='{e(quote(run_report))}"
                     f".html'>{e(run_report)}.html</a>.</p>")
    if png:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{e(FIGURE_TITLE)}</h2><p>{e(FIGURE_CAPTION)}</p>"
                     f"<img alt='{e(FIGURE_TITLE)}' src='data:image/png;base64,{data}'>")
    for t in tables(c):
        parts.append(f"<h2>{e(t.title)}</h2><p>{e(t.caption)}</p>")
        if not t.rows:
            parts.append("<p>None.</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in row) + "</tr>" for row in t.rows]
        parts.append("</table>")
        if _left_out(t):
            parts.append(f"<p class='note'>{e(_left_out(t))}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_markdown(c: Collection, png_name: str | None, skipped: int = 0,
                    run_report: str | None = None) -> str:
    """The Markdown twin; the figure is a PNG beside it. Only the table cells hold text from
    results (the intro, summary and captions are ours), so only they are escaped."""
    m = for_markdown
    out = ["# Throttling report: collection", "", INTRO, "", _summary(c, skipped), ""]
    if run_report:
        out += [f"Per-run detail of the chosen runs: [{m(run_report)}.md]({quote(run_report)}.md)",
                ""]
    if png_name:
        out += [f"## {FIGURE_TITLE}", "", FIGURE_CAPTION, "",
                f"![{FIGURE_TITLE}]({png_name})", ""]
    for t in tables(c):
        out += [f"## {t.title}", "", t.caption, ""]
        if not t.rows:
            out += ["None.", ""]
            continue
        out.append("| " + " | ".join(t.header) + " |")
        out.append("|" + "---|" * len(t.header))
        out += ["| " + " | ".join(m(x) for x in row) + " |" for row in t.rows]
        out.append("")
        if _left_out(t):
            out += [_left_out(t), ""]
    return "\n".join(out)


def write_collection_report(verdict_rows: pd.DataFrame, runs: pd.DataFrame, out: Path, *,
                            skipped: int = 0, run_report: str | None = None) -> list[Path]:
    """Write OUT (HTML), its Markdown twin (.md) and the timeline PNG beside it; returns the
    paths written. `run_report` is the stem of a per-run report beside OUT, to link to."""
    out = Path(out)
    c = collect(verdict_rows, runs)
    png = timeline_figure(c)
    files: dict[Path, bytes] = {}
    png_path = out.with_name(f"{out.stem}-timeline.png")
    if png:
        files[png_path] = png
    files[out.with_suffix(".md")] = render_markdown(
        c, png_path.name if png else None, skipped, run_report).encode()
    files[out] = render_html(c, png, skipped, run_report).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_all(files)
    return [out, out.with_suffix(".md"), *([png_path] if png else [])]

