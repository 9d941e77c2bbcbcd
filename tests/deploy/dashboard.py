"""What the Grafana dashboard asks Prometheus: every PromQL expression in deploy/grafana/dashboards/
(panel targets, template-variable queries, annotations) and the metric names they select."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import DEPLOY

DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# Series Prometheus makes itself, not the monitor: scrape health and the state of its alert rules.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def expressions(path: Path) -> list[str]:
    """Every PromQL expression of one dashboard; Grafana's label_values(selector, label) yields its selector."""
    dashboard = json.loads(path.read_text())
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        found += [t["expr"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            found.append(match.group(1) if match else query)
    found += [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, label names in
    `{…}` / `by (…)` / `on (…)`, durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(ms|[smhdwy])\b", " ", text)  # offset durations
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        if name in _KEYWORDS or re.match(r"\s*\(", text[match.end():]):
            continue
        names.add(name)
    return names


def instantiate(expr: str, rate_interval: str) -> str:
    """The expression as Grafana sends it with every stream and monitor selected."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$instance", ".*").replace("$stream", ".*"))
