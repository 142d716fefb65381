"""The web app: ``create_app(settings)`` wires the routers, the token guard and the shared
state; ``serve`` runs it under uvicorn on services.local_bind_host (127.0.0.1) only.

This is the one place the web side reads settings; everything below gets plain values or
the ``WebState``. Every error is JSON ``{"error": "..."}`` with a fitting status (HTML
pages get the same text in a page); a traceback goes to the log, never to the client.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from autotag.config import Settings
from autotag.errors import AutotagError, ServiceError
from autotag.ops.web_token import load_or_create_token
from autotag.web import (
    api_library,
    api_ops,
    api_people,
    api_photos,
    api_search,
    api_storm,
    api_trash,
    api_videos,
    live,
    pages,
    pages_library,
)
from autotag.web.auth import LOCAL_HOSTS, TokenGuard
from autotag.web.state import WebState
from autotag.web.trash_expiry import TrashExpiry

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Seconds a client may stall between two pieces of a request before the server gives up.
REQUEST_TIMEOUT = 60


def _error(status: int, message: str, request: Request | None = None) -> Response:
    """JSON for the API; a short page for a browser that navigated here."""
    accept = request.headers.get("accept", "") if request is not None else ""
    if "text/html" in accept and request is not None and "hx-request" not in request.headers:
        page = (
            "<!doctype html><meta charset=utf-8><link rel=stylesheet href=/static/app.css>"
            f"<title>autotag: {status}</title><main><h2>{status}</h2>"
            f"<p class=why>{html.escape(message)}</p><p><a href=/>Search</a></p></main>"
        )
        return HTMLResponse(page, status_code=status)
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not supported here"
    response = _error(exc.status_code, message, request)
    for k, v in (exc.headers or {}).items():
        response.headers[k] = v
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
    if first.get("type") == "json_invalid":
        why = first.get("ctx", {}).get("error", "cannot parse")
        return _error(400, f"malformed JSON: {why}", request)
    name = ".".join(where) or "request"
    return _error(400, f"{name}: {first.get('msg', 'invalid')}", request)


async def _service_error(request: Request, exc: ServiceError) -> Response:
    return _error(503, str(exc), request)


async def _autotag_error(request: Request, exc: AutotagError) -> Response:
    return _error(400, str(exc), request)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error (see the server log)", request)


def create_app(
    settings: Settings, *, token: str | None = None, hosts: Iterable[str] | None = None
) -> FastAPI:
    """The app for these settings. ``token`` defaults to the run directory's token file;
    ``hosts`` (Host header names allowed) to services.local_bind_host and the loopback names."""
    state = WebState(settings)
    expiry = TrashExpiry(settings)  # the trash expires on a timer while the service runs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        expiry.start()
        yield
        expiry.stop()
        state.close()

    app = FastAPI(
        title="autotag",
        summary="Photo and video auto-tagging: upload, tags, search, similar photos, video "
        "timelines, re-identification, the cluster.",
        description="Every request needs the token: `Authorization: Bearer <token>` "
        "(the token is in `<run_dir>/web/token`; `autotag url` prints the page's address).",
        version="1",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.web = state
    app.state.trash_expiry = expiry
    app.state.settings = settings
    for router in (
        api_photos.router,
        api_search.router,
        api_videos.router,
        live.router,
        api_ops.router,
        api_storm.router,
        api_trash.router,
        api_people.router,
        api_library.router,
    ):
        app.include_router(router)
    app.include_router(pages.router, include_in_schema=False)
    app.include_router(pages_library.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Starlette types a handler as taking any Exception, though it only ever calls one with
    # the class it is registered for: the narrower handlers below are right, its stub is not.
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(AutotagError, _autotag_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(
        TokenGuard,
        token=token or load_or_create_token(settings.run_dir),
        hosts=list(hosts)
        if hosts is not None
        else [settings.services.local_bind_host, *LOCAL_HOSTS],
    )
    return app


class _HideTokens(logging.Filter):
    """Access-log lines show ``?token=…`` instead of the token (log files are not secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_RE.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args
            )
        return True


_TOKEN_RE = re.compile(r"([?&]token=)[^&\s]*")
WILDCARDS = ("", "0.0.0.0", "::")


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both)."""
    import uvicorn

    from autotag.ops.daemons.base import port_open

    bind_host = host or settings.services.local_bind_host
    if bind_host in WILDCARDS:
        raise ServiceError(f"the web service binds one address, never a wildcard ({bind_host!r})")
    bind_port = settings.services.port(settings.services.http_port) if port is None else port
    if port_open(bind_host, bind_port):
        raise ServiceError(
            f"cannot listen on {bind_host}:{bind_port}: the port is taken "
            "(is the web service already running? `autotag cluster status`; "
            "set AUTOTAG_PORT_OFFSET to move ports)"
        )
    logging.getLogger("uvicorn.access").addFilter(_HideTokens())
    uvicorn.run(
        create_app(settings),
        host=bind_host,
        port=bind_port,
        log_config=None,
        access_log=True,
        timeout_keep_alive=REQUEST_TIMEOUT,
        timeout_graceful_shutdown=5,
        limit_concurrency=200,
        proxy_headers=False,
        server_header=False,
    )
