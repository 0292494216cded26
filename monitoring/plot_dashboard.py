"""Draws the dashboard's panels from Prometheus query_range results (docs/dashboard.png).

tests/integration/test_monitoring.py calls `plot` after its load run when KUBEFORMER_DASHBOARD_PNG
names the output file:

    KUBEFORMER_DASHBOARD_PNG=docs/dashboard.png KUBEFORMER_MONITORING_LOAD_S=90 \\
        pytest -q tests/integration/test_monitoring.py -k live
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

UNITS = {"reqps": "req/s", "ms": "ms", "short": "", "s": "s", "percentunit": "fraction"}


def legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def plot(panels: list[dict[str, Any]], results: dict[str, list[dict]], start: float, path: Path) -> None:
    """panels: the dashboard's timeseries panels; results: expr -> query_range result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        drawn = 0
        for target in panel["targets"]:
            for series in results.get(target["expr"], []):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=legend(target.get("legendFormat", ""), series["metric"]), linewidth=1.2)
                drawn += 1
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle("kubeformer dashboard: a real Prometheus scraping Triton under load and the operator")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
