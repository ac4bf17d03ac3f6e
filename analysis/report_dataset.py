"""HTML and Markdown reports of a public-dataset summary (``summarize()`` output).

The HTML page is self-contained (PNGs inlined as base64) so it can be mailed or
archived alone; the Markdown twin sits beside it with its PNGs as files, for
repositories and issue trackers. Both are built from the summary dict only, and
every output that shows the data carries the dataset's attribution (CC BY 4.0),
including the PNGs themselves. Files appear atomically: everything is rendered
in memory and written to temporary files first, then renamed into place.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.escape import for_html, for_markdown, for_plot
from probe.results.atomic import write_all

LINES_PER_PANEL = 4  # largest ASes drawn per access class
MIN_DAILY_DECIDED = 3  # days with fewer decided visits are not drawn (too noisy to read)
LIFT_DAY = pd.Timestamp("2021-05-17 13:40")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _kbps(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _credit(summary: dict[str, Any]) -> str:
    a = summary["attribution"]
    return (
        f'Data: "{a["dataset"]}" by Andrey Viktorov and Leonid Evdokimov, {a["license"]}, '
        f"{a['source']}; AS data: CAIDA UCSD. Aggregated by throttle-probe."
    )


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _largest(summary: dict[str, Any], access: str) -> list[dict[str, Any]]:
    large = set(summary["parameters"]["large_ases"])
    return [r for r in summary["per_as"] if r["access"] == access and r["asn"] in large][
        :LINES_PER_PANEL
    ]


def daily_share_figure(summary: dict[str, Any]) -> bytes:
    """Daily throttled share of the largest mobile and landline ASes, with change-points."""
    rule = summary["primary_rule"]
    series = pd.DataFrame(summary["rules"][rule]["per_as_day"])
    fig = Figure(figsize=(12, 7.5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, access in zip(axes, ("mobile", "landline"), strict=True):
        for i, r in enumerate(_largest(summary, access)):
            color = f"C{i}"
            s = series[(series["asn"] == r["asn"]) & (series["decided"] >= MIN_DAILY_DECIDED)]
            ax.plot(
                pd.to_datetime(s["date"]),
                s["throttled_share"],
                marker="o",
                ms=3,
                lw=1,
                color=color,
                label=for_plot(f"AS{r['asn']} {(r['as_organization'] or '(no name)')[:28]}"),
            )
            for c in summary["changes"]:
                if c["asn"] == r["asn"]:
                    ax.axvline(pd.Timestamp(c["date"]), color=color, ls=":", lw=1.5)
        ax.axvline(LIFT_DAY, color="black", ls="--", lw=1, label="landline lift 17 May (notes)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("throttled share of visits")
        ax.set_title(f"{access} ASes (rule '{rule}'; dotted = detected change-point)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.text(0.01, 0.005, _credit(summary), fontsize=6.5, color="#444")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return _png(fig)


def overall_figure(summary: dict[str, Any]) -> bytes:
    """Daily throttled share of all Russian visits, mobile and landline, under both rules."""
    fig = Figure(figsize=(10, 4.2))
    ax = fig.subplots()
    for rule, style in (("page", "-"), ("ours", "--")):
        if not summary["rules"][rule]["per_day"]:
            continue  # no Russian visits under this rule: nothing to draw
        days = pd.DataFrame(summary["rules"][rule]["per_day"])
        dates = pd.to_datetime(days["date"])
        for access, color in (("mobile", "C3"), ("landline", "C0")):
            share = [
                d[access]["throttled_share"] if d[access]["decided"] >= MIN_DAILY_DECIDED else None
                for d in summary["rules"][rule]["per_day"]
            ]
            ax.plot(
                dates,
                pd.to_numeric(pd.Series(share, dtype="float64")),
                ls=style,
                color=color,
                lw=1.2,
                label=f"{access}, rule '{rule}'",
            )
    ax.axvline(LIFT_DAY, color="black", ls="--", lw=1, label="landline lift 17 May (notes)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("throttled share of visits")
    ax.set_title("Russian ASes: daily throttled share")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.text(0.01, 0.005, _credit(summary), fontsize=6.5, color="#444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _png(fig)


# ------------------------------------------------------------------ tables


def tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by the HTML and Markdown writers;
    every cell a string (an AS without a name or access class shows as "-")."""
    return [(title, header, [["-" if c is None else str(c) for c in row] for row in rows])
            for title, header, rows in _tables(summary)]


def _tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    rule = summary["primary_rule"]
    overall_rows = []
    for name, r in summary["rules"].items():
        groups = (
            [("Russia, all", r["overall"])]
            + [(f"Russia, {a}", s) for a, s in r["by_access"].items()]
            + [("outside Russia", summary["outside_russia"][name])]
        )
        for group, s in groups:
            overall_rows.append(
                [
                    name,
                    group,
                    str(s["measurements"]),
                    str(s["decided"]),
                    str(s["throttled"]),
                    _pct(s["throttled_share"]),
                    _kbps(s["median_throttled_kbps"]),
                ]
            )
    def change_row(asn: str, organisation: str, access: str, c: dict[str, Any]) -> list[str]:
        return [asn, organisation, access, c["date"], _pct(c["before_share"]),
                _pct(c["after_share"]), str(c["before_n"]), str(c["after_n"]),
                f"{c['statistic']:.1f}"]

    change_rows = [change_row(str(c["asn"]), c["as_organization"], c["access"], c)
                   for c in summary["changes"]]
    for access, g in summary["rules"][rule]["groups"].items():
        change_rows += [change_row("all", f"all {access} ASes", access, c)
                        for c in g["changes"]]
    lift_rows = []
    lift_entries = [
        {
            "asn": "all",
            "as_organization": "all landline ASes",
            **summary["rules"][rule]["groups"]["landline"]["lift_check"],
        }
    ]
    lift_entries += summary["rules"][rule]["landline_lift_check"]
    for e in lift_entries:
        ci_b, ci_a = e["before"]["ci95"], e["after"]["ci95"]
        lift_rows.append(
            [
                str(e["asn"]),
                e["as_organization"],
                f"{_pct(e['before']['share'])} of {e['before']['decided']}"
                + (f" [{_pct(ci_b[0])}, {_pct(ci_b[1])}]" if ci_b else ""),
                f"{_pct(e['after']['share'])} of {e['after']['decided']}"
                + (f" [{_pct(ci_a[0])}, {_pct(ci_a[1])}]" if ci_a else ""),
                "yes" if e["drop_significant"] else "no",
                e["changepoint_date"] or "none",
            ]
        )
    top_rows = [
        [
            str(r["asn"]),
            r["as_organization"],
            r["access"],
            str(r["measurements"]),
            str(r["decided"]),
            _pct(r["throttled_share"]),
            _kbps(r["median_throttled_kbps"]),
        ]
        for r in summary["per_as"][:20]
    ]
    return [
        (
            "Overall (per rule)",
            [
                "rule",
                "group",
                "measurements",
                "decided",
                "throttled",
                "throttled share",
                "median throttled kbps",
            ],
            overall_rows,
        ),
        (
            f"Change-points (rule '{rule}')",
            [
                "ASN",
                "organisation",
                "access",
                "first day",
                "share before",
                "share after",
                "n before",
                "n after",
                "statistic",
            ],
            change_rows,
        ),
        (
            f"Landline lift on 17 May 2021 13:40 UTC (rule '{rule}'; 14 days before vs after,"
            " 95% Wilson intervals)",
            ["ASN", "organisation", "before", "after", "drop significant", "change-point"],
            lift_rows,
        ),
        (
            f"Largest Russian ASes (rule '{rule}')",
            [
                "ASN",
                "organisation",
                "access",
                "measurements",
                "decided",
                "throttled share",
                "median throttled kbps",
            ],
            top_rows,
        ),
    ]


def _notes(summary: dict[str, Any]) -> list[str]:
    p = summary["parameters"]
    cp = p["changepoint"]
    d = summary["data"]
    return [
        f"{d['rows']} rows, {d['rows_russia']} from Russian ASes ({d['russia_selector']}), "
        f"{d['first_day']} to {d['last_day']}.",
        *(f"Rule '{k}': {v['description']}." for k, v in summary["rules"].items()),
        "Mobile/landline: by RIPE organisation of the AS (MTS, MegaFon, VimpelCom mobile, "
        "T2/Tele2, MVNOs are mobile; VimpelCom's fixed-line organisations and all others "
        "are landline); see docs/dataset.md.",
        f"Change-points: binary segmentation of the daily share of visitors (visitor-day = "
        f"one anonymized address on one day), binomial deviance divided by a quasi-binomial "
        f"dispersion, penalty {cp['penalty_per_log_n']:g}·ln N, at least "
        f"{cp['min_segment_days']} days with data and {cp['min_segment_n']} visitor-days a "
        f"side, effect >= {cp['min_effect']:g}; run for ASes with >= "
        f"{p['min_as_measurements']} rows and for all mobile / all landline ASes.",
        f"t.co collateral: the t.co-named control was throttled (our rule) in "
        f"{_pct(summary['collateral_taco']['overall']['throttled_share'])} of decided Russian "
        f"visits.",
    ]


def _attribution_lines(summary: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(text, link) pairs of the attribution, for both writers."""
    a = summary["attribution"]
    return [
        (f'"{a["dataset"]}" by Andrey Viktorov and Leonid Evdokimov', a["source"]),
        (f"licensed under {a['license']}", a["license_url"]),
        (f"collected by {a['collected_by']}", a["collected_by"]),
        *((c, None) for c in a["caida"]),
        (f"Paper: {a['paper']}", None),
        (f"{a['changes']} Dates used: {a['dates_used']}.", None),
    ]


# ------------------------------------------------------------------ writers

_CSS = """body{font-family:system-ui,sans-serif;max-width:70em;margin:1.5em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f3f3}
.attr{background:#f8f8f0;border-left:4px solid #aa8;padding:.5em 1em;font-size:.9em}
img{max-width:100%}"""


def render_html(summary: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The self-contained HTML page."""
    e = for_html
    attr = "".join(
        f'<li><a href="{e(link)}">{e(text)}</a></li>' if link else f"<li>{e(text)}</li>"
        for text, link in _attribution_lines(summary)
    )
    attribution = f'<div class="attr"><strong>Attribution</strong><ul>{attr}</ul></div>'
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(summary['dataset'])}: Twitter throttling in Russia</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(summary['dataset'])}: Twitter throttling in Russia, 2021</h1>",
        attribution,
    ]
    figures = [
        ("Daily throttled share, largest ASes", "daily_share"),
        ("Daily throttled share, all Russian ASes", "overall"),
    ]
    for title, header, rows in tables(summary):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append("<p>None found.</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
        if title.startswith("Change-points"):
            for caption, key in figures:
                data = base64.b64encode(pngs[key]).decode("ascii")
                parts.append(
                    f"<h2>{e(caption)}</h2><img alt='{e(caption)}' "
                    f"src='data:image/png;base64,{data}'>"
                )
    parts.append("<h2>Method</h2><ul>")
    parts += [f"<li>{e(n)}</li>" for n in _notes(summary)]
    parts.append("</ul>")
    parts.append(attribution)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render_markdown(summary: dict[str, Any], png_names: dict[str, str]) -> str:
    """The Markdown twin; images are referenced by file name (they sit beside it)."""
    attribution = ["**Attribution**", ""] + [
        f"- [{for_markdown(text)}]({link})" if link else f"- {for_markdown(text)}"
        for text, link in _attribution_lines(summary)
    ]
    out = [f"# {summary['dataset']}: Twitter throttling in Russia, 2021", "", *attribution, ""]
    figures = [
        ("Daily throttled share, largest ASes", "daily_share"),
        ("Daily throttled share, all Russian ASes", "overall"),
    ]
    for title, header, rows in tables(summary):
        out += [f"## {title}", ""]
        if not rows:
            out += ["None found.", ""]
            continue
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(for_markdown(c) for c in row) + " |" for row in rows]
        out.append("")
        if title.startswith("Change-points"):
            for caption, key in figures:
                out += [f"## {caption}", "", f"![{caption}]({png_names[key]})", ""]
    out += ["## Method", "", *(f"- {n}" for n in _notes(summary)), "", *attribution, ""]
    return "\n".join(out)


def write_report(summary: dict[str, Any], html_path: str | Path) -> list[Path]:
    """Write HTML (self-contained), its Markdown twin (same stem, .md) and the PNGs beside it.

    Returns the paths written. Nothing is left half-written on failure.
    """
    out = Path(html_path)
    pngs = {"daily_share": daily_share_figure(summary), "overall": overall_figure(summary)}
    png_paths = {k: out.with_name(f"{out.stem}_{k}.png") for k in pngs}
    md_path = out.with_suffix(".md")
    files: dict[Path, bytes] = {png_paths[k]: v for k, v in pngs.items()}
    files[md_path] = render_markdown(summary, {k: p.name for k, p in png_paths.items()}).encode()
    files[out] = render_html(summary, pngs).encode()
    write_all(files)
    return list(files)
