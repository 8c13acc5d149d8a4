"""leaderboard.html: one self-contained page (inline CSS, a few lines of JS to sort, matplotlib plots as inline SVG),
from templates/pages/leaderboard.html.j2.

Works offline from a file: no CDN, no fonts to fetch (matplotlib draws text as paths). Given the table and what
grading.leaderboard derives from it (the formatted columns, the ranking time, the Pareto flags, the legend), it imports
nothing of grading.leaderboard.
"""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pandas as pd
from markupsafe import Markup, escape

from grading.html import render
from harness.spec import AssignmentSpec

PLOTS = [("params", "parameters"), ("macs", "MACs (batch 1)")]  # and the training time that ranks
TEXT_COLUMNS = {"submission", "architecture", "Pareto"}
RAW = {"rank": "rank", "params": "params", "MACs": "macs", "accuracy": "accuracy", "time ratio": "time_ratio",
       "latency ms": "latency_ms", "score": "challenge_score", "weight bits": "weight_bits",
       "act. bits": "activation_bits", "struct. sparsity": "structured_sparsity",
       "unstr. sparsity": "unstructured_sparsity", "weight term": "score_weight_term",
       "MAC term": "score_mac_term"}  # shown column: the table's number its cells sort by


def page(spec: AssignmentSpec, table: pd.DataFrame, shown: pd.DataFrame, *, time_column: tuple[str, str, str],
         fronts: dict[str, str], rule: str, legend: list[tuple[str, str]]) -> str:
    """`table` as grading.leaderboard ranks it, `shown` its display_table, `time_column` the (header, axis label,
    meaning) of the training time that ranks, `fronts` the Pareto flag column of each cost, `rule` the ranking rule
    in words, `legend` the (term, meaning) pairs shown under the table (`code` in backticks)."""
    ranked = table[table["rank"].notna()]
    time_header, time_label, _ = time_column
    figures = [{"svg": Markup(plot(ranked, cost, fronts[cost], label)), "label": label}
               for cost, label in [*PLOTS, ("ranked_train_s", time_label)]]
    return render("leaderboard.html.j2", title=spec.title, ranked=len(ranked), not_ranked=len(table) - len(ranked),
                  rule=rule, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), figures=figures,
                  columns=[{"name": c, "css": "text" if c in TEXT_COLUMNS else ""} for c in shown.columns],
                  rows=table_rows(table, shown, time_header),
                  legend=[{"term": term, "text": with_code(text)} for term, text in legend])


def with_code(text: str) -> Markup:
    """`text` escaped, its `backticked` spans as <code>."""
    return Markup(re.sub(r"`([^`]*)`", r"<code>\1</code>", str(escape(text))))


def table_rows(table: pd.DataFrame, shown: pd.DataFrame, time_header: str) -> list[dict]:
    """Each row's cells: the text shown and the key the page's script sorts by (the raw number where there is one;
    empty for a missing value, which sorts last)."""
    raw = {header: table[column] for header, column in {**RAW, time_header: "ranked_train_s"}.items()}
    rows = []
    for i, row in shown.iterrows():
        cells = []
        for column, value in row.items():
            sort_key = raw[column].iloc[i] if column in raw else value
            sort_key = "" if sort_key is None or (not isinstance(sort_key, str) and pd.isna(sort_key)) else sort_key
            css = "text" + (" front" if column == "Pareto" else "") if column in TEXT_COLUMNS else ""
            cells.append({"text": str(value), "sort": str(sort_key), "css": css})
        rows.append({"css": "failed" if pd.isna(table["rank"].iloc[i]) else "", "cells": cells})
    return rows


def plot(ranked: pd.DataFrame, cost: str, front: str, label: str) -> str:
    """accuracy vs `cost` as SVG: every ranked point labelled with its submission (matplotlib escapes the text),
    the Pareto front (rows flagged in column `front`) drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    points = ranked[ranked[cost].notna() & ranked["accuracy"].notna()]
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    try:
        on_front = points[points[front]].sort_values(cost)
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
