"""The report's interactive front: hover over a point to see its assignment and values (plotly).

One self-contained HTML fragment: plotly.js is embedded, so the report still opens offline and
fetches nothing. Two objectives: one scatter; more: a scatter-plot matrix of every pair. Light: plotly
(the [report] extra, imported when the front is drawn) and pandas, no torch.
"""

from __future__ import annotations

import importlib.util

from moesearch.analysis.pareto import Analysis, header
from moesearch.core.assignment import baseline_name
from moesearch.core.metrics import fmt

DIV_ID = "front-interactive"
MISSING = "the interactive front needs plotly: install it with `pip install -e '.[report]'`"


def available() -> bool:
    return importlib.util.find_spec("plotly") is not None


def front_html(analysis: Analysis) -> str:
    """A <div> with the front, the baselines and every other assignment, each point's hover its assignment,
    seeds and objective values (means over seeds); without plotly, a line saying how to get it."""
    if not available():
        return f"<p>{MISSING}.</p>"
    import plotly.graph_objects as go

    t = analysis.table
    objectives = list(analysis.objectives)
    groups = [
        ("Pareto front", t["pareto"], "#1f77b4", "circle"),
        ("uniform baseline", t["baseline"] & ~t["pareto"], "#d62728", "star"),
        ("dominated", ~t["pareto"] & ~t["baseline"], "#aaaaaa", "circle"),
    ]
    traces = []
    for name, mask, color, symbol in groups:
        rows = t[mask]
        if rows.empty:
            continue
        hover = [_hover(row, objectives) for _, row in rows.iterrows()]
        marker = {"color": color, "symbol": symbol, "size": 11 if symbol == "star" else 8}
        if len(objectives) == 2:
            traces.append(
                go.Scatter(
                    x=rows[objectives[1]],
                    y=rows[objectives[0]],
                    mode="markers",
                    name=name,
                    marker=marker,
                    hovertext=hover,
                    hoverinfo="text",
                )
            )
        else:
            traces.append(
                go.Splom(
                    dimensions=[{"label": o, "values": rows[o]} for o in objectives],
                    name=name,
                    marker=marker,
                    hovertext=hover,
                    hoverinfo="text",
                    diagonal_visible=False,
                )
            )
    fig = go.Figure(traces)
    if len(objectives) == 2:
        fig.update_layout(
            xaxis_title=header(objectives[1], analysis.objectives[objectives[1]]),
            yaxis_title=header(objectives[0], analysis.objectives[objectives[0]]),
        )
    fig.update_layout(
        title="Hover over a point: its assignment and values (means over seeds)",
        height=520,
        template="plotly_white",
        legend={"orientation": "h"},
    )
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id=DIV_ID)


def _hover(row, objectives: list[str]) -> str:
    name = row["assignment"] + (f" ({baseline_name(row['assignment'])})" if row["baseline"] else "")
    values = "<br>".join(f"{o}: {fmt(row[o])}" for o in objectives)
    return f"<b>{name}</b><br>{values}<br>seeds: {row['seeds']}, rank {row['pareto_rank']}"
