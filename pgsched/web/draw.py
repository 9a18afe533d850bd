"""Pictures drawn on the server as SVG shapes for the templates: the overview's throughput bars
and a workflow's graph. No script draws anything, so a page is complete as it arrives."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

CHART_W, CHART_H = 600.0, 120.0


@dataclass
class Bar:
    x: float
    w: float
    ok_h: float
    failed_h: float
    title: str


def bars(series: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Bars for attempts finished per bucket, the failed part drawn on top in red."""
    n = max(1, len(series))
    peak = max((p["finished"] for p in series), default=0)
    scale = (CHART_H - 4) / peak if peak else 0.0
    w = CHART_W / n
    out = []
    for i, p in enumerate(series):
        total_h = p["finished"] * scale
        failed_h = p["failed"] * scale
        out.append(
            Bar(
                x=i * w,
                w=max(w - 1, 0.5),
                ok_h=total_h - failed_h,
                failed_h=failed_h,
                title=f"{p['at']:%H:%M} UTC: {p['finished']} finished, {p['failed']} failed",
            )
        )
    finished = sum(p["finished"] for p in series)
    failed = sum(p["failed"] for p in series)
    seconds = (
        (series[-1]["at"] - series[0]["at"]).total_seconds() * n / max(n - 1, 1) if series else 0
    )
    return {
        "label": label,
        "bars": out,
        "peak": peak,
        "width": CHART_W,
        "height": CHART_H,
        "finished": finished,
        "failed": failed,
        "per_s": finished / seconds if seconds else 0.0,
        "failure_rate": failed / finished if finished else 0.0,
        "start": series[0]["at"] if series else None,
        "end": series[-1]["at"] if series else None,
    }


def regroup(series: list[dict[str, Any]], *, minutes: int) -> list[dict[str, Any]]:
    """Minute buckets summed into buckets of ``minutes`` (aligned on the hour, UTC)."""
    from datetime import UTC

    out: dict[Any, dict[str, Any]] = {}
    for p in series:
        at = p["at"].astimezone(UTC)
        key = at.replace(minute=at.minute - at.minute % minutes, second=0, microsecond=0)
        b = out.setdefault(key, {"at": key, "finished": 0, "failed": 0})
        b["finished"] += p["finished"]
        b["failed"] += p["failed"]
    return list(out.values())


NODE_W, NODE_H, COL_W, ROW_H, PAD = 170.0, 46.0, 230.0, 64.0, 12.0


def dag(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """A workflow laid out left to right by layer (a task's longest distance from a root), its
    edges drawn from each parent to each child."""
    by_layer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in sorted(tasks, key=lambda t: (t.get("layer", 0), t["name"])):
        by_layer[t.get("layer", 0)].append(t)
    pos: dict[str, tuple[float, float]] = {}
    nodes = []
    for layer, members in sorted(by_layer.items()):
        for i, t in enumerate(members):
            x, y = PAD + layer * COL_W, PAD + i * ROW_H
            pos[t["name"]] = (x, y)
            nodes.append({"x": x, "y": y, "task": t})
    edges = []
    for t in tasks:
        cx, cy = pos[t["name"]]
        for parent in t.get("depends_on") or []:
            if parent not in pos:
                continue
            px, py = pos[parent]
            x1, y1, x2, y2 = px + NODE_W, py + NODE_H / 2, cx, cy + NODE_H / 2
            mid = (x1 + x2) / 2
            edges.append(
                f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            )
    layers = max(by_layer) + 1 if by_layer else 1
    rows = max((len(m) for m in by_layer.values()), default=1)
    return {
        "nodes": nodes,
        "edges": edges,
        "width": 2 * PAD + (layers - 1) * COL_W + NODE_W,
        "height": 2 * PAD + (rows - 1) * ROW_H + NODE_H,
        "node_w": NODE_W,
        "node_h": NODE_H,
    }
