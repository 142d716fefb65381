"""The blob service: the intake host's photo blobs over HTTP, for workers on other hosts.

    GET /blobs/<id>[?max_bytes=N]   the photo's bytes, streamed (Authorization: Bearer TOKEN)
    GET /healthz                    "ok" (no token: it says nothing about any photo)

It binds the host's own cluster address (``settings.services.listen_host``), never a wildcard, and
answers only requests that carry the cluster's token (compared in constant time). Bytes are
streamed from the content-addressed store as they are; readers (``HttpBlobStore``) check
sha256 = id, so neither a corrupt disk nor the network can hand a worker the wrong photo.
"""

from __future__ import annotations

import hmac
import logging
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from autotag.config import Settings
from autotag.storage import credentials
from autotag.storage.blobs import BlobError, BlobStore, validate_id

log = logging.getLogger("autotag.blob_service")


class BlobServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: BlobStore, token: str) -> None:
        if not token:
            raise ValueError("the blob service refuses to run without a token")
        if address[0] in ("", "0.0.0.0", "::"):
            raise ValueError("the blob service binds a host's own address, never a wildcard")
        self.store = store
        self.token = token.encode()
        super().__init__(address, BlobHandler)


class BlobHandler(BaseHTTPRequestHandler):
    server: BlobServer
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per worker, not per photo
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the reader's delayed ACK would hold every small photo back by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        # The access log (logs/blobs.log): which host read which photo, with the status.
        log.info("%s %s", self.client_address[0], format % args)

    def _plain(self, status: HTTPStatus, reason: str) -> None:
        body = (reason + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Autotag-Reason", reason[:200])
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(token.encode(), self.server.token)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._plain(HTTPStatus.OK, "ok")
            return
        if not self._authorized():
            self._plain(HTTPStatus.UNAUTHORIZED, "a valid token is required")
            return
        if not url.path.startswith("/blobs/"):
            self._plain(HTTPStatus.NOT_FOUND, "no such endpoint")
            return
        try:
            photo_id = validate_id(url.path.removeprefix("/blobs/"))
            raw_limit = parse_qs(url.query).get("max_bytes", [""])[0]
            max_bytes = int(raw_limit) if raw_limit else None
        except ValueError as exc:
            self._plain(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            fh, size = self.server.store.open(photo_id, max_bytes)
        except BlobError as exc:
            status = (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE if "limit" in str(exc) else HTTPStatus.NOT_FOUND
            )
            self._plain(status, f"photo {photo_id}: {exc}")
            return
        with fh:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(fh, self.wfile, 1 << 20)


def serve(settings: Settings) -> None:
    """Run the blob service for these settings until killed."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s [%(levelname)s] %(message)s"
    )
    server = BlobServer(
        (settings.services.listen_host, settings.services.port(settings.services.blob_port)),
        BlobStore(settings.blob_dir),
        credentials.read(settings.run_dir, credentials.BLOB),
    )
    log.info(
        "blob service on http://%s:%d/ serving %s", *server.server_address[:2], settings.blob_dir
    )
    server.serve_forever()


def main() -> None:
    from autotag.config import settings

    serve(settings())


if __name__ == "__main__":
    main()
