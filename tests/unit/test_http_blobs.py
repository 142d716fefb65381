"""The blob service and HttpBlobStore: a real HTTP server on loopback, the same read contract
as the local BlobStore (bytes verified against the id, limits, clear errors)."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotag.checksums import bytes_sha256
from autotag.errors import ServiceError
from autotag.storage.blobs import BlobError, BlobStore
from autotag.storage.http_blobs import HttpBlobStore
from autotag.web.blob_service import BlobServer

TOKEN = "test-token-0123456789"


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[BlobStore, str]]:
    store = BlobStore(tmp_path / "blobs")
    server = BlobServer(("127.0.0.1", 0), store, TOKEN)
    # A short poll: shutdown() waits for serve_forever's next look (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield store, f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def test_reads_the_same_bytes_as_the_local_store(served: tuple[BlobStore, str]) -> None:
    store, url = served
    data = bytes(range(256)) * 4000
    pid, _ = store.put_bytes(data)
    remote = HttpBlobStore(url, TOKEN)
    assert remote.read(pid) == store.read(pid) == data
    assert remote.read(pid, max_bytes=len(data)) == data  # again, on the kept-alive connection


def test_altered_blob_is_refused(served: tuple[BlobStore, str]) -> None:
    store, url = served
    pid, path = store.put_bytes(b"original photo bytes")
    path.write_bytes(b"tampered photo bytes")
    with pytest.raises(BlobError, match="does not match its id"):
        HttpBlobStore(url, TOKEN).read(pid)


def test_missing_and_oversized_blobs_are_blob_errors(served: tuple[BlobStore, str]) -> None:
    store, url = served
    remote = HttpBlobStore(url, TOKEN)
    with pytest.raises(BlobError, match="missing"):
        remote.read(bytes_sha256(b"never stored"))
    pid, _ = store.put_bytes(b"x" * 5000)
    with pytest.raises(BlobError, match="4000-byte limit"):
        remote.read(pid, max_bytes=4000)
    assert remote.read(pid) == b"x" * 5000  # the connection still works afterwards


def test_wrong_or_missing_token_is_refused(served: tuple[BlobStore, str]) -> None:
    store, url = served
    pid, _ = store.put_bytes(b"secret photo")
    with pytest.raises(ServiceError, match="refused the token"):
        HttpBlobStore(url, "wrong-token").read(pid)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}/blobs/{pid}", timeout=5)
    assert err.value.code == 401


def test_path_tricks_are_not_ids(served: tuple[BlobStore, str]) -> None:
    _store, url = served
    req = urllib.request.Request(
        f"{url}/blobs/..%2F..%2Fetc%2Fpasswd", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400
    with pytest.raises(ValueError):
        HttpBlobStore(url, TOKEN).read("../../etc/passwd")


def test_unreachable_service_is_a_service_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ServiceError, match="unreachable"):
        HttpBlobStore(f"http://127.0.0.1:{port}", TOKEN).read(bytes_sha256(b"x"))


def test_server_refuses_wildcard_and_missing_token(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError, match="wildcard"):
        BlobServer(("0.0.0.0", 0), store, TOKEN)
    with pytest.raises(ValueError, match="token"):
        BlobServer(("127.0.0.1", 0), store, "")


def test_access_log_names_the_reader_and_the_photo(
    served: tuple[BlobStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    store, url = served
    pid, _ = store.put_bytes(b"logged photo")
    with caplog.at_level("INFO", logger="autotag.blob_service"):
        HttpBlobStore(url, TOKEN).read(pid)
    assert any(
        r.getMessage().startswith(f'127.0.0.1 "GET /blobs/{pid} HTTP/1.1" 200 ')
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
