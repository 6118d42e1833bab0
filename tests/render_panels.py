"""The README's picture of the dashboards: six panels' own queries (from the committed JSON, variables
filled in) run as range queries on the real Prometheus of ``tests/integration/test_dashboard_queries.py``
and drawn with matplotlib, since no Grafana runs here. Made by

    VIGIL_RENDER_PANELS=docs/dashboards.png .venv/bin/python -m pytest -p no:cacheprovider \\
        tests/integration/test_dashboard_queries.py -k every_panel
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from tests.prometheus_server import Prometheus

ROOT = Path(__file__).resolve().parents[1]
# (dashboard file, panel title, what it shows for this run)
PANELS = (
    ("fleet.json", "GPU temperature across the fleet", "celsius"),
    ("fleet.json", "Firing detections by alert", "entities firing"),
    ("node.json", "GPU power", "watts (node-01)"),
    ("training.json", "Step time and compute", "seconds (a straggler from 35 s)"),
    ("training.json", "Stragglers: slowest ranks' compute against the median", "compute time / median rank"),
    ("health.json", "Consumer lag by group and topic", "records"),
)
VALUES = {"cluster": "default", "node": "node-01", "gpu": ".*", "job": "job-0", "__rate_interval": "1m"}


def fill(expr: str) -> str:
    for name in sorted(VALUES, key=len, reverse=True):
        expr = expr.replace(f"${name}", VALUES[name])
    return expr


def legend(template: str, labels: dict[str, str]) -> str:
    if template in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def panel(dashboard: str, title: str) -> dict[str, Any]:
    body = json.loads((ROOT / "dashboards" / dashboard).read_text())
    (found,) = [p for p in body["panels"] if p["title"] == title]
    return dict(found)


def render_panels(prom: Prometheus, out: Path, minutes: float = 3.0, settle_s: float = 60.0) -> None:
    """Draw the panels over the last ``minutes``, after ``settle_s`` more of the run (the straggler's
    slower steps and the lag's ups and downs need some time to show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time.sleep(settle_s)
    end = time.time()
    start = end - minutes * 60
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), constrained_layout=True)
    for ax, (dashboard, title, unit) in zip(axes.ravel(), PANELS, strict=True):
        for target in panel(dashboard, title)["targets"]:
            for series in prom.query_range(fill(target["expr"]), start, end, "2s"):
                ts = [float(t) - end for t, _ in series["values"]]
                ax.plot(
                    ts,
                    [float(v) for _, v in series["values"]],
                    lw=1.2,
                    label=legend(target["legendFormat"], series["metric"]),
                )
        ax.set_title(f"{title}\n({dashboard})", fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("seconds before the end of the run", fontsize=8)
        if 0 < len(ax.get_legend_handles_labels()[1]) <= 8:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Vigil's dashboards on a short vigil up (4 x 4 simulated GPUs): panel queries on a real Prometheus")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")
