"""``autotag url | serve``: the web page — its address with its login token (Jupyter's
habit), and the server in the foreground."""

from __future__ import annotations

import json
import logging
import sys

import click

from autotag.config import Settings, settings
from autotag.ops.web_token import load_or_create_token, token_file


def page_url(s: Settings, token: str, path: str = "/") -> str:
    net = s.services
    return f"http://{net.local_bind_host}:{net.port(net.http_port)}{path}?token={token}"


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print url, token file and whether it answers."
)
def url(as_json: bool) -> None:
    """Print the web page's address with its token (open it once; the browser keeps a cookie).

    The token lives in <run_dir>/web/token (mode 0600); delete the file and restart the web
    service (`autotag cluster down web && autotag cluster up web`) to change it.
    """
    from autotag.ops.cluster import WebDaemon

    s = settings()
    token = load_or_create_token(s.run_dir)
    problem = WebDaemon(s).check()
    if as_json:
        payload = {"url": page_url(s, token), "token_file": str(token_file(s.run_dir))}
        click.echo(
            json.dumps({**payload, "healthy": problem is None, "problem": problem}, indent=2)
        )
        return
    click.echo(page_url(s, token))
    if problem:
        click.echo(f"autotag: the web page is not healthy: {problem}", err=True)
        click.echo("  start it with `autotag cluster up` (or `autotag serve`)", err=True)


@click.command()
@click.option("--port", type=int, default=None, help="Port (default: http_port + offset).")
def serve(port: int | None) -> None:
    """Run the web page and HTTP API (uvicorn) on 127.0.0.1 in the foreground.

    `autotag cluster up` runs the same server as the cluster's `web` service.
    """
    from autotag.ops.web_token import load_or_create_token
    from autotag.web.app import serve as serve_app

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
        )
    s = settings()
    bound = s.services.port(s.services.http_port) if port is None else port
    token = load_or_create_token(s.run_dir)
    click.echo(
        f"autotag web page on http://{s.services.local_bind_host}:{bound}/?token={token} "
        "(Ctrl-C to stop)",
        err=True,
    )
    serve_app(s, port=port)


commands = [url, serve]
