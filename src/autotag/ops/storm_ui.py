"""A Storm UI for the local cluster: Storm's REST API v1 (the parts people script against)
plus a one-page HTML view, answered from Nimbus' Thrift API.

Storm's own UI (storm-webapp) is not published to Maven Central, the only place this project
may download Storm from, so the local cluster serves this instead. Field names follow
Storm's REST API documentation so existing scripts (e.g. `/api/v1/cluster/summary`'s
``supervisors`` / ``slotsFree``) keep working. Run: ``python -m autotag.ops.storm_ui``.
"""

from __future__ import annotations

import html
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

from autotag.config import Settings, settings
from autotag.ops.nimbus import NimbusClient

STARTED = time.time()


def cluster_summary(s: Settings) -> dict[str, Any]:
    info = NimbusClient(s).cluster_info()
    total = sum(sv.num_workers for sv in info.supervisors)
    used = sum(sv.num_used_workers for sv in info.supervisors)
    return {
        "stormVersion": s.storm_version,
        "supervisors": len(info.supervisors),
        "topologies": len(info.topologies),
        "slotsTotal": total,
        "slotsUsed": used,
        "slotsFree": total - used,
        "executorsTotal": sum(t.num_executors for t in info.topologies),
        "tasksTotal": sum(t.num_tasks for t in info.topologies),
        "nimbusUptimeSeconds": max((n.uptime_secs for n in info.nimbuses or []), default=0),
    }


def supervisor_summary(s: Settings) -> dict[str, Any]:
    info = NimbusClient(s).cluster_info()
    return {
        "supervisors": [
            {
                "id": sv.supervisor_id,
                "host": sv.host,
                "uptimeSeconds": sv.uptime_secs,
                "slotsTotal": sv.num_workers,
                "slotsUsed": sv.num_used_workers,
                "slotsFree": sv.num_workers - sv.num_used_workers,
                "version": sv.version,
            }
            for sv in info.supervisors
        ]
    }


def nimbus_summary(s: Settings) -> dict[str, Any]:
    info = NimbusClient(s).cluster_info()
    return {
        "nimbuses": [
            {
                "host": n.host,
                "port": n.port,
                "status": "Leader" if n.isLeader else "Not a Leader",
                "nimbusUpTimeSeconds": n.uptime_secs,
                "version": n.version,
            }
            for n in info.nimbuses or []
        ]
    }


def topology_summary(s: Settings) -> dict[str, Any]:
    return {
        "topologies": [
            {
                "id": t.id,
                "name": t.name,
                "status": t.status,
                "uptimeSeconds": t.uptime_secs,
                "workersTotal": t.workers,
                "executorsTotal": t.executors,
                "tasksTotal": t.tasks,
            }
            for t in NimbusClient(s).topologies()
        ]
    }


def topology_detail(s: Settings, topology_id: str) -> dict[str, Any]:
    client = NimbusClient(s)
    rows = [t for t in client.topologies() if t.id == topology_id or t.name == topology_id]
    if not rows:
        raise KeyError(topology_id)
    row = rows[0]
    info = client.topology_info(row.name)
    components: dict[str, dict[str, Any]] = {}
    for ex in info.executors or []:
        comp = components.setdefault(
            ex.component_id, {"executors": 0, "emitted": 0, "acked": 0, "failed": 0}
        )
        comp["executors"] += 1
        stats = ex.stats
        if stats is None:
            continue
        comp["emitted"] += sum(stats.emitted.get(":all-time", {}).values()) if stats.emitted else 0
        specific = stats.specific
        for field in ("spout", "bolt"):
            part = getattr(specific, field, None)
            if part is not None:
                comp["acked"] += sum(part.acked.get(":all-time", {}).values())
                comp["failed"] += sum(part.failed.get(":all-time", {}).values())
    return {**row.as_dict(), "components": components}


ROUTES = {
    "/api/v1/cluster/summary": cluster_summary,
    "/api/v1/supervisor/summary": supervisor_summary,
    "/api/v1/nimbus/summary": nimbus_summary,
    "/api/v1/topology/summary": topology_summary,
}


def render_page(s: Settings) -> str:
    summary = cluster_summary(s)
    rows = "".join(
        f"<tr><td>{html.escape(t['name'])}</td><td>{t['status']}</td><td>{t['uptimeSeconds']}</td>"
        f"<td>{t['workersTotal']}</td><td>{t['executorsTotal']}</td></tr>"
        for t in topology_summary(s)["topologies"]
    )
    facts = "".join(f"<li>{k}: {v}</li>" for k, v in summary.items())
    return (
        "<!doctype html><title>Storm UI (autotag local cluster)</title>"
        f"<h1>Storm {html.escape(s.storm_version)} — local cluster</h1><ul>{facts}</ul>"
        "<table border=1><tr><th>topology</th><th>status</th><th>uptime s</th><th>workers</th>"
        f"<th>executors</th></tr>{rows}</table>"
        "<p>REST: /api/v1/cluster/summary, /api/v1/supervisor/summary, /api/v1/nimbus/summary, "
        "/api/v1/topology/summary, /api/v1/topology/&lt;id&gt;</p>"
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "autotag-storm-ui"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        s = settings()
        path = urlparse(self.path).path.rstrip("/") or "/"
        try:
            if path == "/":
                self._send(200, render_page(s), "text/html")
            elif path in ROUTES:
                self._send(200, json.dumps(ROUTES[path](s)))
            elif path.startswith("/api/v1/topology/"):
                self._send(200, json.dumps(topology_detail(s, unquote(path.rsplit("/", 1)[1]))))
            else:
                self._send(404, json.dumps({"error": "not found", "path": path}))
        except KeyError as exc:
            self._send(404, json.dumps({"error": f"no topology {exc.args[0]!r}"}))
        except Exception as exc:  # noqa: BLE001 - report, never crash the UI
            self._send(503, json.dumps({"error": str(exc) or type(exc).__name__}))


def main() -> None:
    s = settings()
    server = ThreadingHTTPServer((s.local_bind_host, s.port(s.ui_port)), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
