"""A Storm UI for the local cluster: Storm's REST API v1 (the parts people script against)
plus a one-page HTML view, answered from Nimbus' Thrift API.

Storm's own UI (storm-webapp) is not published to Maven Central, the only place this project
may download Storm from, so the local cluster serves this instead. Field names follow
Storm's REST API documentation so existing scripts (e.g. `/api/v1/cluster/summary`'s
``supervisors`` / ``slotsFree``) keep working. A topology's paths,
``/api/v1/topology/<id>?window=`` and ``/api/v1/topology/<id>/component/<name>``, are
``ops.storm_rest``'s: the same JSON the web API serves (``web.api_storm``), which the HTML
view renders too. No token: it binds ``local_bind_host`` (loopback), for this host's users
only. Run: ``python -m autotag.ops.storm_ui``.
"""

from __future__ import annotations

import html
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from autotag.config import Settings, settings
from autotag.ops import storm_rest
from autotag.ops.nimbus import NimbusClient

STARTED = time.time()


def cluster_summary(s: Settings) -> dict[str, Any]:
    info = NimbusClient(s).cluster_info()
    total = sum(sv.num_workers for sv in info.supervisors)
    used = sum(sv.num_used_workers for sv in info.supervisors)
    return {
        "stormVersion": s.storm.storm_version,
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


ROUTES = {
    "/api/v1/cluster/summary": cluster_summary,
    "/api/v1/supervisor/summary": supervisor_summary,
    "/api/v1/nimbus/summary": nimbus_summary,
    "/api/v1/topology/summary": topology_summary,
}


COMPONENT_COLUMNS = {  # the HTML view's columns, as Storm's UI orders them
    "spouts": "spoutId executors tasks emitted transferred completeLatency acked failed "
    "lastError".split(),
    "bolts": "boltId executors tasks emitted transferred capacity executeLatency executed "
    "processLatency acked failed lastError".split(),
}


def _cell(value: Any) -> str:
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def render_topology(topo: dict[str, Any]) -> str:
    """One topology's spouts and bolts: the dict ``/api/v1/topology/<id>`` answers with
    (``ops.storm_rest``), as a table per kind."""
    tid = quote(topo["id"], safe="")
    parts = [
        f"<h2>{html.escape(topo['name'])} <small>({html.escape(topo['id'])}, "
        f"{html.escape(topo['status'])}, {html.escape(topo['windowHint'])})</small></h2>",
        f"<p>topology stats: {html.escape(json.dumps(topo['topologyStats']))}"
        + ("" if topo["statsReported"] else " — no figures reported by the workers yet")
        + f' <a href="/api/v1/topology/{tid}">JSON</a></p>',
    ]
    for kind, columns in COMPONENT_COLUMNS.items():
        head = "".join(f"<th>{c}</th>" for c in columns)
        rows = "".join(
            "<tr>"
            + f'<td><a href="/api/v1/topology/{tid}/component/{quote(r[columns[0]], safe="")}">'
            + f"{html.escape(r[columns[0]])}</a></td>"
            + "".join(_cell(r.get(c)) for c in columns[1:])
            + "</tr>"
            for r in topo[kind]
        )
        parts.append(f"<h3>{kind}</h3><table border=1><tr>{head}</tr>{rows}</table>")
    return "".join(parts)


def render_page(s: Settings) -> str:
    summary = cluster_summary(s)
    listed = topology_summary(s)["topologies"]
    rows = "".join(
        f"<tr><td>{html.escape(t['name'])}</td><td>{html.escape(t['status'])}</td>"
        f"<td>{t['uptimeSeconds']}</td><td>{t['workersTotal']}</td>"
        f"<td>{t['executorsTotal']}</td></tr>"
        for t in listed
    )
    details = []
    for t in listed:
        try:
            details.append(render_topology(storm_rest.topology(s, t["id"])))
        except storm_rest.StormRestError:
            continue  # killed since it was listed
    facts = "".join(f"<li>{k}: {html.escape(str(v))}</li>" for k, v in summary.items())
    return (
        "<!doctype html><meta charset=utf-8><title>Storm UI (autotag local cluster)</title>"
        f"<h1>Storm {html.escape(s.storm.storm_version)} — local cluster</h1><ul>{facts}</ul>"
        "<table border=1><tr><th>topology</th><th>status</th><th>uptime s</th><th>workers</th>"
        f"<th>executors</th></tr>{rows}</table>{''.join(details)}"
        "<p>REST: /api/v1/cluster/summary, /api/v1/supervisor/summary, /api/v1/nimbus/summary, "
        "/api/v1/topology/summary, /api/v1/topology/&lt;id&gt;?window=, "
        "/api/v1/topology/&lt;id&gt;/component/&lt;name&gt;?window=</p>"
    )


def route(s: Settings, path: str, query: str) -> dict[str, Any]:
    """The JSON for a REST path (percent-encoded, as requested); ``StormRestError`` 404 if
    there is none. The topology paths are ``ops.storm_rest``'s, as the web API serves them."""
    if path in ROUTES:
        return ROUTES[path](s)
    window = parse_qs(query).get("window", [None])[-1]
    parts = path.split("/")  # "", "api", "v1", "topology", <id>[, "component", <name>]
    if len(parts) >= 5 and parts[:4] == ["", "api", "v1", "topology"] and parts[4]:
        name = unquote(parts[4])
        if len(parts) == 5:
            return storm_rest.topology(s, name, window)
        if len(parts) == 7 and parts[5] == "component" and parts[6]:
            return storm_rest.component(s, name, unquote(parts[6]), window)
    raise storm_rest.StormRestError(404, f"no such endpoint: {unquote(path)}")


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
        url = urlparse(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            if path == "/":
                self._send(200, render_page(s), "text/html")
            else:
                self._send(200, json.dumps(route(s, path, url.query)))
        except storm_rest.StormRestError as exc:
            self._send(exc.status, json.dumps({"error": exc.message}))
        except Exception as exc:  # noqa: BLE001 - report, never crash the UI
            self._send(503, json.dumps({"error": str(exc) or type(exc).__name__}))


def main() -> None:
    s = settings()
    server = ThreadingHTTPServer(
        (s.services.local_bind_host, s.services.port(s.services.ui_port)), Handler
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
