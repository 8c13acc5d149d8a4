"""leaderboard.html: one self-contained page (inline CSS, a few lines of JS to sort, matplotlib plots as inline SVG).

Works offline from a file: no CDN, no fonts to fetch (matplotlib draws text as paths).
"""
from __future__ import annotations

import html
import io
from datetime import datetime, timezone

import pandas as pd

from grading.leaderboard import FRONTS, display_table, time_column
from harness.spec import AssignmentSpec

PLOTS = [("params", "parameters"), ("macs", "MACs (batch 1)")]  # and the training time that ranks (time_column)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1320px;
       padding: 0 1.5rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } .meta { color: #59636e; margin-top: 0; }
.plots { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1rem; margin: 1.5rem 0; }
.plots figure { margin: 0; border: 1px solid #d1d9e0; border-radius: 8px; padding: .5rem; background: #fff; }
.plots svg { width: 100%; height: auto; } figcaption { text-align: center; color: #59636e; font-size: .85rem; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .45rem .6rem; border-bottom: 1px solid #d1d9e0; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; cursor: pointer; user-select: none; position: sticky; top: 0; }
th:hover { background: #eaeef2; } th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td.text, th.text { text-align: left; } tr.failed td { color: #8c959f; font-style: italic; }
tr:hover td { background: #f6f8fa; } .front { color: #1a7f37; font-weight: 600; }
"""

SCRIPT = """
document.querySelectorAll("#leaderboard th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const descending = th.classList.contains("asc");
  th.parentNode.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
  th.classList.add(descending ? "desc" : "asc");
  const key = row => row.cells[column].dataset.sort;
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");  // empty cells last, both ways
    const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
}));
"""


def render(spec: AssignmentSpec, table: pd.DataFrame) -> str:
    ranked = table[table["rank"].notna()]
    rule = (f"challenge score, lowest first (counts at held-out accuracy &ge; {spec.leaderboard.accuracy_gate:.0%})"
            if spec.leaderboard.rank == "challenge"
            else "Pareto front first (accuracy up; parameters, MACs, training time down), then accuracy")
    _, time_label, time_note = time_column(table)
    figures = "\n".join(f'<figure>{plot(ranked, cost, label)}<figcaption>accuracy vs {label}, log scale; the line is '
                        "the Pareto front</figcaption></figure>"
                        for cost, label in [*PLOTS, ("ranked_train_s", time_label)])
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Leaderboard: {html.escape(spec.title)}</title><style>{STYLE}</style></head>
<body>
<h1>Leaderboard: {html.escape(spec.title)}</h1>
<p class="meta">{len(ranked)} ranked, {len(table) - len(ranked)} not graded &middot; ranked by {rule} &middot;
every number measured by the grader &middot; {generated}</p>
<div class="plots">{figures}</div>
{table_html(table)}
<p class="meta">{html.escape(time_note)}</p>
<script>{SCRIPT}</script>
</body></html>
"""


def table_html(table: pd.DataFrame) -> str:
    shown = display_table(table)
    raw = {"rank": table["rank"], "params": table["params"], "MACs": table["macs"], "accuracy": table["accuracy"],
           time_column(table)[0]: table["ranked_train_s"], "time ratio": table["time_ratio"],
           "latency ms": table["latency_ms"], "score": table["challenge_score"]}
    text_columns = {"submission", "architecture", "Pareto"}
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{html.escape(c)}</th>' for c in shown.columns)
    body = []
    for i, row in shown.iterrows():
        cells = []
        for column, value in row.items():
            sort_key = raw[column].iloc[i] if column in raw else value
            sort_key = "" if sort_key is None or (not isinstance(sort_key, str) and pd.isna(sort_key)) else sort_key
            css = "text" + (" front" if column == "Pareto" else "") if column in text_columns else ""
            cells.append(f'<td class="{css}" data-sort="{html.escape(str(sort_key))}">{html.escape(str(value))}</td>')
        failed = pd.isna(table["rank"].iloc[i])
        body.append(f'<tr class="{"failed" if failed else ""}">{"".join(cells)}</tr>')
    return (f'<table id="leaderboard"><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody></table>")


def plot(ranked: pd.DataFrame, cost: str, label: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    points = ranked[ranked[cost].notna() & ranked["accuracy"].notna()]
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    try:
        on_front = points[points[FRONTS[cost]]].sort_values(cost)
        ax.scatter(points[cost], points["accuracy"] * 100, s=36, color="#8c959f", zorder=2)
        ax.scatter(on_front[cost], on_front["accuracy"] * 100, s=48, color="#1a7f37", zorder=3)
        if len(on_front):
            ax.step(on_front[cost], on_front["accuracy"] * 100, where="post", color="#1a7f37", lw=1.5, zorder=1)
        for _, row in points.iterrows():
            ax.annotate(row["submission"], (row[cost], row["accuracy"] * 100), textcoords="offset points",
                        xytext=(5, 4), fontsize=8, color="#1f2328")
        if len(points):
            ax.set_xscale("log")
            ax.margins(x=0.25, y=0.12)
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy (%)")
        ax.grid(True, which="major", color="#eaeef2")
        ax.spines[["top", "right"]].set_visible(False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    finally:
        plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]
