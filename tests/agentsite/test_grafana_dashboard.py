"""deploy/grafana-dashboard.json charts every metric /metrics serves, and only
those (a renamed metric must not leave an empty panel behind)."""

import json
import re
from pathlib import Path

from chat.metrics import SPECS
from chat.views import SCRAPE_GAUGES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
SUFFIXES = re.compile(r"_(bucket|sum|count)$")


def test_the_dashboard_charts_every_served_metric_and_no_other() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    named = {
        SUFFIXES.sub("", name)
        for expr in exprs
        for name in re.findall(r"agentsite_[a-z_]+", expr)
    }
    served = {spec.name for spec in SPECS} | set(SCRAPE_GAUGES)
    assert named == served
    # Every web process serves the whole deployment's counts: never summed.
    assert not [expr for expr in exprs if re.search(r"\bsum\b", expr)]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(
        dashboard["panels"]
    )
