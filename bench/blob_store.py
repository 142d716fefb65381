"""Photo reads: this host's blob directory vs the intake host's blob service over HTTP.

    virtualenvs/autotag/bin/python bench/blob_store.py --photos 400 --readers 2

Side by side on the same photos (distinct JPEGs from installed packages, --long-side pixels):

  read only   photos/s and MB/s of one reader: BlobStore.read vs HttpBlobStore.read (both
              verify sha256 = id), then --readers processes reading the service at once (its
              MB/s: what N workers on other hosts can pull from one intake host)
  read + tag  photos/s of one tagging process (the autotag bolt's work: read, decode,
              features, classifiers) with each store: the per-worker cost of the network hop

The blob service runs in its own process on 127.0.0.1, as on the intake host. Only meaningful
on an idle machine; over a real network add the link's transfer time (photo bytes / bandwidth).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import secrets
import tempfile
import time
from pathlib import Path

from autotag.storage.blobs import BlobReader, BlobStore
from autotag.storage.http_blobs import HttpBlobStore


def _serve(root: str, token: str, port_out: mp.Queue) -> None:
    from autotag.web.blob_service import BlobServer

    server = BlobServer(("127.0.0.1", 0), BlobStore(Path(root)), token)
    port_out.put(server.server_address[1])
    server.serve_forever()


def _read_all(store: BlobReader, ids: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    nbytes = sum(len(store.read(pid)) for pid in ids)
    return time.perf_counter() - t0, nbytes


def _reader_process(url: str, token: str, ids: list[str], out: mp.Queue) -> None:
    out.put(_read_all(HttpBlobStore(url, token), ids))


def _tag_all(tagger, store: BlobReader, ids: list[str]) -> float:
    from autotag.pipeline.tag_step import tag_photo

    t0 = time.perf_counter()
    for pid in ids:
        result = tag_photo(tagger, store, pid)
        assert result.status == "tagged", result.reason
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--long-side", type=int, default=1024, help="Photo size (pixels).")
    ap.add_argument("--readers", type=int, default=2, help="Concurrent reader processes.")
    ap.add_argument("--no-tag", action="store_true", help="Skip the read + tag comparison.")
    args = ap.parse_args()

    from autotag.learning import samples

    work = Path(tempfile.mkdtemp(prefix="autotag-blobbench-"))
    store = BlobStore(work / "blobs")
    paths = samples.make_distinct_photos(args.photos, work / "photos", long_side=args.long_side)
    ids = [store.put_file(p)[0] for p in paths]
    token = secrets.token_urlsafe(32)
    port_q: mp.Queue = mp.Queue()
    server = mp.Process(target=_serve, args=(str(store.root), token, port_q), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port_q.get(timeout=30)}"
    remote = HttpBlobStore(url, token)
    try:
        _read_all(store, ids[:5]), _read_all(remote, ids[:5])  # warm the page cache and socket
        t_local, nbytes = _read_all(store, ids)
        t_http, _ = _read_all(remote, ids)
        mb = nbytes / 1e6
        print(f"{len(ids)} photos, {mb / len(ids) * 1000:.0f} kB each on average")
        print(
            f"read  local BlobStore   {len(ids) / t_local:8.1f} photos/s  {mb / t_local:8.1f} MB/s"
        )
        print(f"read  HttpBlobStore     {len(ids) / t_http:8.1f} photos/s  {mb / t_http:8.1f} MB/s")
        out: mp.Queue = mp.Queue()
        procs = [
            mp.Process(target=_reader_process, args=(url, token, ids, out))
            for _ in range(args.readers)
        ]
        for p in procs:
            p.start()
        timings = [out.get() for _ in procs]  # (seconds, bytes) each, timed inside the reader
        for p in procs:
            p.join()
        total = sum(nb for _, nb in timings) / 1e6
        wall = max(secs for secs, _ in timings)
        print(f"blob service, {args.readers} readers at once: {total / wall:8.1f} MB/s")
        if not args.no_tag:
            from autotag.config import load_settings
            from autotag.pipeline.tag_step import load_tagger
            from autotag.vision.bundle import set_active
            from autotag.vision.features import onnx_model_path
            from autotag.vision.imagenet import build_default_bundle

            s = load_settings({"AUTOTAG_RUN_DIR": str(work), "AUTOTAG_MODELS_DIR": str(work / "m")})
            s.models_dir.mkdir(parents=True, exist_ok=True)
            set_active(
                s.models_dir, build_default_bundle(s.models_dir, onnx_model_path(s.model_dirs))
            )
            tagger = load_tagger(s.tagging, s.limits)
            _tag_all(tagger, store, ids[:3])
            t_tag_local = _tag_all(tagger, store, ids)
            t_tag_http = _tag_all(tagger, remote, ids)
            print(f"read + tag, one process, local  {len(ids) / t_tag_local:8.2f} photos/s")
            print(
                f"read + tag, one process, HTTP   {len(ids) / t_tag_http:8.2f} photos/s "
                f"({(t_tag_http - t_tag_local) / len(ids) * 1000:+.1f} ms per photo)"
            )
    finally:
        remote.close()
        server.terminate()
        server.join()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
