"""The ops report as one self-contained HTML page: the data :func:`ops.runtime.report.gather` returns, rendered.

Nothing is fetched to view it: the styles and the small script are in the page, and the charts are static SVG drawn
by pygal when the report is made (its default links a tooltip script on the web: ``js=[]`` turns that off; the page's
own script gives each point a native tooltip instead). Every text that comes from data (pipeline names, errors,
paths, notes) is escaped; pygal escapes what it writes into its SVG. pygal is imported only when a page is rendered.
"""

from __future__ import annotations

import html
from datetime import date, datetime
from pathlib import Path
from string import Template
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from ops.runtime.report import MEANING, STATES

TEMPLATE = Path(__file__).parent / "templates" / "report.html"
STATUS_CLASS = {"pass": "ok", "warn": "warn", "fail": "bad", "applied": "ok", "pending": "warn", "ahead": "warn"}
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
ANOMALY = "#d62728"
LOOKS_SHOWN = 100  # the newest days that need a look, listed with their whole error


def e(value: Any) -> str:
    """Text from data, escaped for HTML (quotes too: it goes into attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def compact(n: int) -> str:
    """A row count that fits a grid cell: 950, 12.3k, 4.5M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(n)


def table(heads: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """An HTML table; ``rows`` hold HTML already escaped."""
    head = "".join(f"<th>{e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def badge(text: str, cls: str | None = None) -> str:
    return f'<span class="badge {e(cls or STATUS_CLASS.get(text, "bad"))}">{e(text)}</span>'


def file_link(path: str | None) -> str:
    """A log path as text, linked when it is absolute (the page is read where the logs are)."""
    if not path:
        return ""
    if path.startswith("/"):
        return f'<a href="file://{e(quote(path))}"><code>{e(path)}</code></a>'
    return f"<code>{e(path)}</code>"


# --- sections ----------------------------------------------------------------------------------------------------

def health_section(h: dict[str, Any]) -> str:
    verdict = "healthy" if h["healthy"] else "unhealthy"
    summary = (f"{plural(h['passed'], 'check')} passed, {plural(h['warnings'], 'warning')}, "
               f"{h['failed']:,} failed")
    rows = [(f"<b>{e(c['name'])}</b>", badge(c["status"]), e(c["reason"]),
             f"{c['seconds']:.2f}s" if c.get("seconds") is not None else "") for c in h["checks"]]
    return (f'<section id="health"><h2>Health <span class="verdict {"ok" if h["healthy"] else "bad"}" '
            f'data-verdict="{verdict}">{verdict}</span></h2><p>{e(summary)} (inv proc.check)</p>'
            + table(["check", "result", "reason", "took"], rows, "checks") + "</section>")


def _cell_title(name: str, target: str, cell: dict[str, Any]) -> str:
    lines = [f"{name} {cell['day']}: {cell['state']}", f"rows in {target}: {cell['rows']:,}"]
    if cell["run_id"]:
        lines.append(f"attempt {cell['attempt']} ({cell['status']}), run {cell['run_id'][:8]}, "
                     f"started {when(cell['started_at'])}, {cell['rows_written'] or 0:,} rows written")
    if cell["stale"]:
        lines.append(f"stale: {cell['stale']}")
    if cell["error"]:
        lines.append(f"error: {cell['error'][:500]}")
    if cell["acknowledged"]:
        ack = cell["acknowledged"]
        lines.append(f"acknowledged by {ack['by']} {when(ack['at'])}" + (f": {ack['note']}" if ack["note"] else ""))
    if cell["log_path"]:
        lines.append(f"log: {cell['log_path']}")
    return "\n".join(lines)


def _needs_a_look(cell: dict[str, Any]) -> bool:
    return cell["state"] not in ("succeeded", "missing") and bool(cell["run_id"])


def _cell(name: str, target: str, cell: dict[str, Any]) -> str:
    text = compact(cell["rows"]) if cell["state"] != "missing" else "·"
    inner = f'<a href="#run-{e(cell["run_id"])}">{text}</a>' if _needs_a_look(cell) else text
    return (f'<td class="cell st-{cell["state"]}" data-pipeline="{e(name)}" data-day="{cell["day"]}" '
            f'data-state="{cell["state"]}" data-rows="{cell["rows"]}" title="{e(_cell_title(name, target, cell))}">'
            f"{inner}</td>")


def _look(name: str, c: dict[str, Any]) -> str:
    """A cell that needs a look, in the list under the grid: its newest attempt, whole error, acknowledgement, log."""
    ack = c["acknowledged"]
    return (f'<li id="run-{e(c["run_id"])}"><b>{e(name)} {c["day"]}</b> {badge(c["state"], "st-" + c["state"])} '
            f'attempt {e(c["attempt"])}, run <code>{e(c["run_id"])}</code>, started {e(when(c["started_at"]))}'
            + (f'<div class="error">{e(c["error"])}</div>' if c["error"] else "")
            + (f'<div>stale: {e(c["stale"])}</div>' if c["stale"] else "")
            + (f'<div>acknowledged by {e(ack["by"])} {e(when(ack["at"]))}{": " + e(ack["note"]) if ack["note"] else ""}'
               "</div>" if ack else "")
            + (f"<div>log: {file_link(c['log_path'])}</div>" if c["log_path"] else "") + "</li>")


def grid_section(g: dict[str, Any]) -> str:
    if not g["pipelines"]:
        return '<section id="grid"><h2>Pipelines × days</h2><p class="muted">no pipelines</p></section>'
    head = "".join(f'<th title="{d:%A %Y-%m-%d}">{d:%m-%d}</th>' for d in g["days"])
    body = "".join(
        f'<tr><th class="name" title="target {e(p["target"])}">{e(p["pipeline"])}</th>'
        + "".join(_cell(p["pipeline"], p["target"], c) for c in p["cells"]) + "</tr>" for p in g["pipelines"])
    legend = "".join(f'<span class="key"><span class="swatch st-{s}"></span>{s} ({g["totals"][s]:,})</span>'
                     for s in STATES if s != "gone" or g["totals"][s])
    details = sorted(((c, p["pipeline"]) for p in g["pipelines"] for c in p["cells"] if _needs_a_look(c)),
                     key=lambda x: (str(x[0]["day"]), x[1]), reverse=True)
    more = len(details) - LOOKS_SHOWN
    details = details[:LOOKS_SHOWN]
    items = "".join(_look(name, c) for c, name in details)
    return (f'<section id="grid"><h2>Pipelines × days</h2><p class="muted">each cell: its target\'s rows that '
            f'day; hover for the newest attempt, click a marked one for its error and log</p>'
            f'<div class="scroll"><table class="grid"><thead><tr><th></th>{head}</tr></thead><tbody>{body}'
            f'</tbody></table></div><p class="legend">{legend}</p>'
            + (f'<h3>Days that need a look</h3><ul class="attempts">{items}</ul>' if items else "")
            + (f'<p class="muted">and {plural(more, "older one")} (inv pipeline.history)</p>' if more > 0 else "")
            + "</section>")


# --- charts (pygal, imported here only) --------------------------------------------------------------------------

def _style():
    from pygal.style import Style

    return Style(background="transparent", plot_background="#ffffff", foreground="#333", foreground_strong="#111",
                 foreground_subtle="#bbb", font_family="system-ui, -apple-system, Segoe UI, sans-serif",
                 colors=SERIES_COLORS, title_font_size=14, label_font_size=11, major_label_font_size=11,
                 legend_font_size=11)


def _svg(chart) -> str:
    return chart.render(is_unicode=True, disable_xml_declaration=True)


def rows_chart(series: dict[str, Any]) -> str:
    """A line of rows per day for one target; a flagged day (no data, a big change) is a large red point."""
    import pygal

    days = [d["day"] for d in series["days"]]
    chart = pygal.Line(js=[], style=_style(), width=760, height=240, show_legend=False, include_x_axis=True,
                       x_labels_major_every=max(1, len(days) // 10), show_minor_x_labels=len(days) <= 14,
                       value_formatter=lambda v: f"{v:,.0f} rows", margin=8, truncate_label=-1, max_scale=6)
    chart.title = f"{series['target']} rows per day"
    chart.x_labels = [f"{d:%m-%d}" for d in days]
    chart.add("rows", [{"value": d["rows"], "label": "; ".join(d["flags"]), "color": ANOMALY, "node": {"r": 6}}
                       if d["flags"] else {"value": d["rows"]} for d in series["days"]])
    return _svg(chart)


def durations_chart(per_pipeline: list[dict[str, Any]]) -> str:
    """Each finished attempt's duration by when it started, one line per pipeline; a failed attempt is red."""
    import pygal

    starts = [r["started_at"] for p in per_pipeline for r in p["runs"]]
    span = (max(starts) - min(starts)).total_seconds() if starts else 0
    shown = "%H:%M:%S" if span < 3600 else "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
    chart = pygal.DateTimeLine(js=[], style=_style(), width=760, height=300, x_label_rotation=20, margin=8,
                               x_value_formatter=lambda dt: dt.strftime(shown), max_scale=6,
                               value_formatter=lambda v: f"{v:.2f}s", legend_at_bottom=True, truncate_legend=-1,
                               legend_at_bottom_columns=min(4, max(1, len(per_pipeline))))
    chart.title = "run durations (seconds) by start time"
    for p in per_pipeline:
        chart.add(p["pipeline"], [
            {"value": (r["started_at"], r["seconds"]), "label": f"{r['day']}: {r['status']}, {r['rows']:,} rows",
             **({"color": ANOMALY, "node": {"r": 5}} if r["status"] != "succeeded" else {})} for r in p["runs"]])
    return _svg(chart)


def rows_section(series: list[dict[str, Any]], threshold: float | None) -> str:
    if not series:
        return '<section id="rows"><h2>Rows per day</h2><p class="muted">no targets</p></section>'
    parts = []
    for s in series:
        flagged = [d for d in s["days"] if d["flags"]]
        note = "; ".join(f"{d['day']:%m-%d} {', '.join(d['flags'])}" for d in flagged) or "nothing flagged"
        parts.append(f'<figure class="chart" data-chart="rows" data-target="{e(s["target"])}" '
                     f'data-flagged="{len(flagged)}">{rows_chart(s)}<figcaption>{e(s["target"])} (written by '
                     f'{e(", ".join(s["pipelines"]))}): {e(note)}</figcaption></figure>')
    limit = f"{threshold:.0%}" if threshold is not None else "backfill.change_threshold"
    return (f'<section id="rows"><h2>Rows per day</h2><p class="muted">red points: a day without data or a change of '
            f'more than {e(limit)} from the day before (backfill.change_threshold)</p>{"".join(parts)}</section>')


def durations_section(per_pipeline: list[dict[str, Any]]) -> str:
    runs = sum(len(p["runs"]) for p in per_pipeline)
    if not runs:
        return '<section id="durations"><h2>Run durations</h2><p class="muted">no finished runs</p></section>'
    return (f'<section id="durations"><h2>Run durations</h2><figure class="chart" data-chart="durations" '
            f'data-runs="{runs}">{durations_chart(per_pipeline)}<figcaption>{plural(runs, "finished attempt")} of '
            f'the days shown; red: failed or killed</figcaption></figure></section>')


# --- migrations, plans, deploys ------------------------------------------------------------------------------------

def migrations_section(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n:,} {state}" for state, n in sorted(counts.items())) or "no migrations"
    body = [(f"<code>{e(r['id'])}</code>", badge(r["state"]), e(when(r.get("applied_at"))), e(r.get("applied_by")),
             e(r.get("note"))) for r in rows]
    return (f'<section id="migrations"><h2>Migrations</h2><p>{e(summary)} (inv db.status)</p>'
            + (table(["migration", "state", "applied", "by", "note"], body, "migrations") if rows else "")
            + "</section>")


def plans_section(plans: list[dict[str, Any]]) -> str:
    if not plans:
        return '<section id="plans"><h2>Backfill plans</h2><p class="muted">no backfill plans</p></section>'
    body = [(f"<code>{e(p['id'])}</code>", e(when(p["created_at"])), e(p["created_by"]),
             f"{e(p['start'])} .. {e(p['end'])}", e(", ".join(p["jobs"])), f"{p['partitions']:,}",
             f"{p['succeeded']:,}", f"{p['failed']:,}", f"{p['running']:,}", f"{p['pending']:,}",
             f'<span class="bar"><span style="width:{float(p["done_percent"]):.0f}%"></span></span> '
             f"{float(p['done_percent']):.0f}%") for p in plans]
    return ('<section id="plans"><h2>Backfill plans</h2><p class="muted">newest first (inv backfill.plans)</p>'
            + table(["plan", "created", "by", "days", "jobs", "partitions", "ok", "failed", "running", "pending",
                     "done"], body, "plans") + "</section>")


def deploys_section(d: dict[str, Any]) -> str:
    bad = f" ({plural(d['bad_lines'], 'line')} of it unreadable, skipped)" if d["bad_lines"] else ""
    if d.get("unreadable"):
        return (f'<section id="deploys"><h2>Deploys</h2><p class="muted">cannot read <code>{e(d["path"])}</code>: '
                f'{e(d["unreadable"])}</p></section>')
    if not d["deploys"]:
        return (f'<section id="deploys"><h2>Deploys</h2><p class="muted">no deploys recorded in '
                f'<code>{e(d["path"])}</code>{e(bad)}</p></section>')
    body = [(e(x["at"]), e(x["action"]), e(x["target"] or x["host"]), f"<code>{e(x['release'])}</code>",
             f"<code>{e(x['from_release'])}</code>", badge(str(x["outcome"]), "ok" if x["outcome"] in
                                                            ("ok", "succeeded", "healthy") else "bad"),
             e(x["error"]), file_link(x["log"])) for x in d["deploys"]]
    return (f'<section id="deploys"><h2>Deploys</h2><p class="muted">the last {plural(len(d["deploys"]), "deploy")}, '
            f'newest first{e(bad)}</p>'
            + table(["at", "action", "target", "release", "from", "outcome", "error", "log"], body, "deploys")
            + "</section>")


def problems_section(problems: dict[str, str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in problems.items())
    return f'<section id="problems" class="problems"><h2>Not shown</h2><ul>{items}</ul></section>'


def render(data: dict[str, Any]) -> str:
    """The whole page."""
    start, end = data["start"], data["end"]
    span = f"{start} .. {end}" if isinstance(start, date) else ""
    sections = [health_section(data["health"]), problems_section(data["problems"]), grid_section(data["grid"]),
                rows_section(data["rows"], data["threshold"]), durations_section(data["durations"]),
                migrations_section(data["migrations"]), plans_section(data["plans"]), deploys_section(data["deploys"])]
    legend = "; ".join(f"{s}: {MEANING[s]}" for s in STATES)
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=e(f"chops ops report, {data['environment']}, {span}"), environment=e(data["environment"]),
        generated=e(when(data["generated_at"])), span=e(span), legend=e(legend),
        healthy="healthy" if data["health"]["healthy"] else "unhealthy", body="\n".join(filter(None, sections)))


def write(data: dict[str, Any], path: Path) -> Path:
    """Render ``data`` to ``path`` (its folder made as needed), through a temporary file so a reader never sees half
    a page."""
    text = render(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)
    return path
