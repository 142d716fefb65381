"""Who may use the page and the API: Jupyter's token habit, plus two browser-side guards.

Every request (reads too: photos are private) must carry the token from the 0600 file
under the run directory (``ops.web_token``): as ``Authorization: Bearer <token>``, as the
cookie that a first visit with ``?token=`` sets (HttpOnly, SameSite=Strict), or as that
query parameter itself. Before that, the Host header must name this machine, so a
DNS-rebinding page cannot reach the server under its own name; and a state-changing request
must send an image, a video or JSON, content types a foreign web page cannot send without a CORS
preflight that this server never grants. A pure ASGI middleware, so event streams pass
through untouched.
"""

from __future__ import annotations

import hmac
import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "autotag_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(host_header: str) -> str:
    """The name part of a Host header (``[::1]:8090`` -> ``::1``), lower case."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def allowed_content_type(content_type: str) -> bool:
    """image/*, video/* or JSON (``application/json``, ``application/*+json``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith(("image/", "video/"))
        or media == "application/json"
        or media.endswith("+json")
    )


class TokenGuard:
    """ASGI middleware: Host allow-list, token check, content-type check, cookie on first visit."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: Iterable[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = {h.lower() for h in hosts}

    def _valid(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            await _refuse(
                send,
                400,
                f"Host {host!r} is not allowed (this server answers only to its own address)",
                headers,
            )
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = (query.get("token") or [None])[-1]
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if not (self._valid(bearer) or self._valid(cookie) or self._valid(from_query)):
            why = "wrong token" if (bearer or cookie or from_query) else "no token"
            await _refuse(
                send,
                401,
                f"{why}: open the address `autotag url` prints, or send "
                "Authorization: Bearer <token> (the token is in <run_dir>/web/token)",
                headers,
            )
            return
        if scope["method"] in STATE_CHANGING and not allowed_content_type(
            headers.get("content-type", "")
        ):
            await _refuse(
                send,
                415,
                "send an image (Content-Type: image/...), a video (video/...) or JSON"
                " (Content-Type: application/json)",
                headers,
            )
            return
        if self._valid(from_query) and not self._valid(cookie):
            send = _with_cookie(send, from_query or "")
        await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _with_cookie(send: Send, token: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).append(
                "set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            )
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, message: str, headers: Headers) -> None:
    """A JSON error, or a short HTML page for a browser that asked for one."""
    if "text/html" in headers.get("accept", ""):
        body = (
            "<!doctype html><meta charset=utf-8><title>autotag: refused</title>"
            f"<h1>{status}</h1><p>{html.escape(message)}</p>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"error": message}).encode()
        ctype = b"application/json"
    extra: list[tuple[bytes, bytes]] = []
    if status == 401:
        extra.append((b"www-authenticate", b"Bearer"))
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
