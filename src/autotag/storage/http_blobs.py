"""Photo blobs read over HTTP from the intake host's blob service (``autotag.web.blob_service``).

A worker on another host has no access to the intake host's disk; it asks the blob service
for ``GET /blobs/<id>`` with the cluster's token and checks the bytes against the id exactly
as ``BlobStore.read`` does, so a wrong or altered answer is a failed photo, never a wrong tag.
One persistent HTTP/1.1 connection per store keeps the per-photo cost to one round trip.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse

from autotag.checksums import bytes_sha256
from autotag.errors import ServiceError
from autotag.storage.blobs import BlobError, validate_id

_RETRIES = 3


class HttpBlobStore:
    """``read(photo_id, max_bytes)`` against a blob service at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ServiceError(f"blob_url must look like http://HOST:PORT, not {url!r}")
        if not token:
            raise ServiceError("the blob service needs a token, and none was given")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _get(self, path: str, max_bytes: int | None) -> tuple[int, bytes, str]:
        """(status, body, reason header) with a reconnect on a dropped keep-alive connection;
        ServiceError once the service stays unreachable. A body over ``max_bytes`` is cut at
        ``max_bytes + 1`` (and the connection dropped), never read whole into memory."""
        last: Exception | None = None
        for attempt in range(_RETRIES):
            conn = self._connection()
            try:
                conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
                resp = conn.getresponse()
                if max_bytes is None:
                    body = resp.read()
                else:
                    body = resp.read(max_bytes + 1)
                    if not resp.isclosed():
                        self.close()
                return resp.status, body, resp.getheader("X-Autotag-Reason", "")
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                self.close()
                time.sleep(0.2 * attempt)
        raise ServiceError(f"blob service at {self.url} is unreachable: {last}")

    def read(self, photo_id: str, max_bytes: int | None = None) -> bytes:
        """A blob's bytes, verified against its id; BlobError if missing, too big or altered."""
        pid = validate_id(photo_id)
        path = f"/blobs/{pid}" + (f"?max_bytes={max_bytes}" if max_bytes is not None else "")
        status, body, reason = self._get(path, max_bytes)
        where = f"{self.url}/blobs/{pid}"
        if status in (401, 403):
            raise ServiceError(f"blob service at {self.url} refused the token (HTTP {status})")
        if status == 404:
            raise BlobError(f"photo is missing from the blob service: {where}")
        if status == 413 or (max_bytes is not None and len(body) > max_bytes):
            raise BlobError(f"photo is larger than the {max_bytes}-byte limit: {where}")
        if status != 200:
            raise BlobError(f"blob service answered HTTP {status} for {where}: {reason}")
        if bytes_sha256(body) != pid:
            raise BlobError(f"photo from the blob service does not match its id: {where}")
        return body
