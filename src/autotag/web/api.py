"""A small JSON HTTP API over intake and lookups (stdlib ThreadingHTTPServer).

    POST /photos                     raw body, or multipart/form-data with one file
    GET  /photos/<id>                a photo, its current tags, whether it has a vector
    GET  /tags/<tag>?min_score=&limit=
    GET  /similar/<id>?top=&min_score=&tag=
    GET  /videos/<id>                a video's timeline (tags, detections per segment)
    GET  /reid/<detection_id>?top=   the same person in other segments, videos, cameras
    GET  /stats
    GET  /healthz

Errors are JSON ``{"error": "..."}`` with a fitting status; a traceback goes to the log,
never to the client. It binds settings.host (127.0.0.1) only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
import redis
from psycopg.pq import TransactionStatus

from autotag.config import Settings
from autotag.errors import AutotagError, ServiceError
from autotag.pipeline import intake
from autotag.search.reid import ReidIndex
from autotag.search.service import SimilarityService
from autotag.storage import blobs, database, lookups, videos
from autotag.storage.blobs import BlobStore
from autotag.storage.photo_stream import PhotoStream

log = logging.getLogger(__name__)

# Room for multipart headers and boundaries on top of settings.max_file_bytes.
MULTIPART_OVERHEAD = 64 * 1024
MAX_LIMIT = 1000
# A refused body up to this size is read and dropped so the client sees the 413.
DRAIN_MAX = 16 * 1024 * 1024


class HttpError(Exception):
    """An error response: status code and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionPool:
    """A few reusable Postgres connections shared by the request threads."""

    def __init__(self, settings: Settings, size: int = 8) -> None:
        self.settings = settings
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=30):
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "too busy: no database connection")
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._lock:
                while self._idle and conn is None:
                    candidate = self._idle.pop()
                    if candidate.closed:
                        continue
                    conn = candidate
            if conn is None:
                conn = database.connect(self.settings)
            with database.pg_errors(self.settings):
                yield conn
        finally:
            if conn is not None:
                healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
                if healthy:
                    with self._lock:
                        self._idle.append(conn)
                else:
                    conn.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            for c in self._idle:
                c.close()
            self._idle.clear()


class App:
    """State shared by request handlers: settings, the Postgres pool, the Redis client and
    the similarity service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ConnectionPool(settings)
        self.blobs = BlobStore(settings.blob_dir)
        self._stream: PhotoStream | None = None
        self._redis_lock = threading.Lock()
        self._similarity: SimilarityService | None = None
        self._similarity_lock = threading.Lock()
        # Bounds memory: multipart bodies are parsed in memory.
        self.upload_slots = threading.BoundedSemaphore(4)

    @property
    def stream(self) -> PhotoStream:
        with self._redis_lock:
            if self._stream is None:
                self._stream = PhotoStream(self.settings)
            return self._stream

    def similarity(self) -> SimilarityService:
        """The app's one similarity service, caught up with Postgres: loaded on first use,
        then only refreshed, so repeated queries never reload the index."""
        with self._similarity_lock:
            if self._similarity is None:
                self._similarity = SimilarityService(self.settings, persist=True)
            service = self._similarity
        service.refresh()  # the first call loads
        return service

    def close(self) -> None:
        self.pool.close()
        if self._stream is not None:
            self._stream.redis.close()
        if self._similarity is not None:
            self._similarity.close()


def parse_multipart(body: bytes, content_type: str) -> tuple[str | None, bytes]:
    """The (filename, bytes) of the single file in a multipart/form-data body."""
    msg = Message()
    msg["content-type"] = content_type
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise HttpError(HTTPStatus.BAD_REQUEST, "multipart body without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    parts: list[tuple[str | None, bytes, bool]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed multipart part")
        headers = Message()
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip()] = v.strip()
        filename = None
        disposition = headers.get("content-disposition")
        if disposition:
            headers_cd = Message()
            headers_cd["content-type"] = "x/x; " + disposition.split(";", 1)[-1]
            fn = headers_cd.get_param("filename")
            filename = fn if isinstance(fn, str) else None
        parts.append((filename, content, filename is not None))
    files = [p for p in parts if p[2]] or parts
    if len(files) != 1:
        raise HttpError(
            HTTPStatus.BAD_REQUEST, f"send exactly one file per request (got {len(files)})"
        )
    return files[0][0], files[0][1]


def _jsonable(value: Any) -> Any:
    """Make similarity results (dataclasses, numpy scalars, tuples) JSON-serialisable."""
    if hasattr(value, "as_dict"):
        return _jsonable(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _float(q: dict[str, list[str]], name: str, default: float | None) -> float | None:
    raw = q.get(name, [None])[-1]
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be a number") from None


def _int(q: dict[str, list[str]], name: str, default: int) -> int:
    raw = q.get(name, [None])[-1]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be between 1 and {MAX_LIMIT}")
    return value


def _photo_id(raw: str) -> str:
    try:
        return blobs.validate_id(raw)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "photo id must be 64 hex characters") from None


def _source_name(raw: str | None) -> str:
    name = Path((raw or "").replace("\\", "/")).name.replace("\x00", "")
    return name[:255] or "upload"


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the app; turns every failure into a JSON error."""

    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "autotag"
    timeout = 60  # seconds a client may stall mid-request before its thread gives up

    # -- plumbing ------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        try:
            status, payload = self._route(method)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except ServiceError as exc:
            status, payload = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        except AutotagError as exc:
            status, payload = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except Exception:
            log.exception("%s %s failed", method, self.path)
            self.close_connection = True
            status, payload = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error (see the server log)"},
            )
        try:
            self._send_json(status, payload)
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.close_connection = True
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.close_connection = True
        self._dispatch("DELETE")

    # -- routes --------------------------------------------------------------------------
    def _route(self, method: str) -> tuple[int, Any]:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query, keep_blank_values=True)
        app = self.server.app
        if parts == ["photos"] and method == "POST":
            return self._upload(app, query)
        if method != "GET":
            self.close_connection = True  # the body (if any) was not read
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not supported here")
        if parts == ["healthz"]:
            return self._health(app)
        if len(parts) == 2 and parts[0] == "photos":
            pid = _photo_id(parts[1])
            with app.pool.connection() as conn:
                info = lookups.show(conn, pid)
            if info is None:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no photo {pid}")
            return HTTPStatus.OK, info.as_dict()
        if len(parts) == 2 and parts[0] == "tags":
            min_score = _float(query, "min_score", 0.0) or 0.0
            limit = _int(query, "limit", 50)
            with app.pool.connection() as conn:
                hits = lookups.search(conn, parts[1], min_score, limit)
                segments = videos.search_segments(conn, parts[1], min_score, limit)
            return HTTPStatus.OK, {
                "tag": parts[1],
                "results": [h.as_dict() for h in hits],
                "segments": [g.as_dict() for g in segments],
            }
        if len(parts) == 2 and parts[0] == "videos":
            with app.pool.connection() as conn:
                vid = videos.resolve_video_id(conn, parts[1])
                info = None if vid is None else videos.show_video(conn, vid)
            if info is None:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no video {parts[1]!r}")
            return HTTPStatus.OK, _jsonable(info.as_dict())
        if len(parts) == 2 and parts[0] == "reid" and parts[1].isdigit():
            with app.pool.connection() as conn:
                index = ReidIndex(conn)
                index.load()
                try:
                    q, hits = index.like_detection(int(parts[1]), _int(query, "top", 10))
                except AutotagError as exc:
                    raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from None
            return HTTPStatus.OK, _jsonable({"query": q, "results": hits})
        if parts == ["stats"]:
            with app.pool.connection() as conn:
                return HTTPStatus.OK, lookups.stats(conn)
        if len(parts) == 2 and parts[0] == "similar":
            return self._similar(app, _photo_id(parts[1]), query)
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")

    def _drain(self, length: int) -> None:
        """Read and drop a refused body if it is small enough, so the client gets to read the
        error instead of a connection reset; a bigger one is cut off by closing."""
        self.close_connection = True
        if length > DRAIN_MAX:
            return
        left = length
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _health(self, app: App) -> tuple[int, Any]:
        checks: dict[str, str] = {}
        try:
            with app.pool.connection() as conn:
                conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except (ServiceError, HttpError, psycopg.Error) as exc:
            checks["postgres"] = str(exc)
        try:
            with app.stream.errors():
                app.stream.redis.ping()
            checks["redis"] = "ok"
        except (ServiceError, redis.RedisError) as exc:
            checks["redis"] = str(exc)
        ok = all(v == "ok" for v in checks.values())
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), {"ok": ok, **checks}

    def _similar(self, app: App, pid: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        top = _int(query, "top", 10)
        min_score = _float(query, "min_score", None)  # None: the engine's default
        tag = (query.get("tag", [""])[-1] or None) if "tag" in query else None
        with app.pool.connection() as conn:
            info = lookups.show(conn, pid)
        if info is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no photo {pid}")
        if not info.has_vector:
            raise HttpError(
                HTTPStatus.NOT_FOUND,
                f"photo {pid} has no feature vector yet (status {info.status})",
            )
        try:
            results = app.similarity().similar_to_photo(pid, top, min_score, tag)
        except (KeyError, LookupError, FileNotFoundError) as exc:
            raise HttpError(HTTPStatus.NOT_FOUND, str(exc).strip("'\"")) from None
        return HTTPStatus.OK, {"photo_id": pid, "results": _jsonable(results)}

    def _upload(self, app: App, query: dict[str, list[str]]) -> tuple[int, Any]:
        s = app.settings
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length") is None:
            self.close_connection = True
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        try:
            length = int(self.headers["Content-Length"])
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        multipart = ctype.lower().startswith("multipart/form-data")
        limit = s.max_file_bytes + (MULTIPART_OVERHEAD if multipart else 0)
        too_big = f"larger than the {s.max_file_bytes}-byte limit"
        if length > limit:
            self._drain(length)
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_big)
        force = query.get("force", ["0"])[-1].lower() in ("1", "true", "yes")
        if not app.upload_slots.acquire(timeout=60):
            self.close_connection = True
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "too many uploads in progress")
        try:
            if multipart:
                body = self.rfile.read(length)
                if len(body) != length:
                    self.close_connection = True
                    raise HttpError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
                filename, data = parse_multipart(body, ctype)
                del body
                if len(data) > s.max_file_bytes:
                    raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_big)
                import io

                photo_id, _blob, nbytes = app.blobs.put_stream(io.BytesIO(data))
                source = _source_name(filename)
            else:
                try:
                    photo_id, _blob, nbytes = app.blobs.put_stream(
                        self.rfile, length=length, max_bytes=s.max_file_bytes
                    )
                except EOFError:
                    self.close_connection = True
                    raise HttpError(
                        HTTPStatus.BAD_REQUEST, "body shorter than Content-Length"
                    ) from None
                source = _source_name(
                    query.get("name", [None])[-1] or self.headers.get("X-Filename")
                )
        finally:
            app.upload_slots.release()
        with app.pool.connection() as conn, app.stream.errors():
            up = intake.Intake(s)
            up.conn, up.stream = conn, app.stream
            status, reason = up.register_and_enqueue(photo_id, source, nbytes, force=force)
        payload = {"photo_id": photo_id, "status": status, "bytes": nbytes, "source": source}
        if reason:
            payload["reason"] = reason
        code = HTTPStatus.ACCEPTED if status == intake.QUEUED else HTTPStatus.OK
        return code, payload


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    app: App


def make_server(settings: Settings, host: str | None = None, port: int | None = None) -> ApiServer:
    """A bound (not yet serving) server; port 0 picks a free port (tests)."""
    bind_host = host or settings.host
    bind_port = settings.port(settings.http_port) if port is None else port
    try:
        server = ApiServer((bind_host, bind_port), Handler)
    except OSError as exc:
        raise ServiceError(
            f"cannot listen on {bind_host}:{bind_port}: {exc.strerror} "
            "(is `autotag serve` already running? set AUTOTAG_PORT_OFFSET to move ports)"
        ) from exc
    server.app = App(settings)
    return server


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted."""
    server = make_server(settings, host, port)
    h, p = server.server_address[:2]
    log.info("autotag HTTP API on http://%s:%s/", h, p)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.app.close()
