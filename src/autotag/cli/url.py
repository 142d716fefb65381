"""``autotag url``: the web page's address with its login token (Jupyter's habit)."""

from __future__ import annotations

import json

import click

from autotag.config import Settings, settings
from autotag.ops.web_token import load_or_create_token, token_file


def page_url(s: Settings, token: str, path: str = "/") -> str:
    return f"http://{s.local_bind_host}:{s.port(s.http_port)}{path}?token={token}"


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


commands = [url]
