"""`autotag delete --query` on a wrong import of 10,000 photos: how long the dry run and the
delete take, with the command's own progress, and whether the dry run's count is what is
deleted (and nothing else).

On an isolated environment of its own (temporary run dir, shifted ports; Redis and Postgres
only): N photos tagged "wrongimport" and taken in 2019-2020 (the import to clean up), written
through storage.writer as the DB writer writes them (tags, vector, date taken), plus photos
that must stay: 1,000 "wrongimport" taken in 2021 (outside --from/--to) and 1,000 with other
tags. Then, as a user would:

    autotag delete --query wrongimport --from 2019-01-01 --to 2020-12-31 --dry-run --json
    autotag delete --query wrongimport --from 2019-01-01 --to 2020-12-31 --yes --json

and checks: the dry run's count = photos trashed = N, every other photo still there.

    python bench/delete_query.py --photos 10000 [--permanently]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from autotag import config
from autotag.config import child_env, load_settings
from autotag.contract import PhotoResult
from autotag.ops import cluster, run_dir
from autotag.ops.daemons.postgres import PostgresDaemon
from autotag.ops.daemons.redis import RedisDaemon
from autotag.storage import database, registry, writer

AUTOTAG = Path(sys.executable).parent / "autotag"
BATCH = 500


def _ids(prefix: str, n: int) -> list[str]:
    import hashlib

    return [hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest() for i in range(n)]


def _write(conn, ids: list[str], tag: str, start: datetime, rng: np.random.Generator) -> None:
    """Register the photos and store a tagged result for each, as the DB writer does."""
    for k in range(0, len(ids), BATCH):
        chunk = ids[k : k + BATCH]
        for pid in chunk:
            registry.register(conn, pid, f"{tag}-{pid[:8]}.jpg", 1000)
        vecs = rng.normal(size=(len(chunk), 1280)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        results = [
            PhotoResult(
                pid,
                "tagged",
                "bench@1",
                "cnn@1",
                [(tag, 0.9), ("outdoor", 0.5)],
                vecs[j],
                taken_local=(start + timedelta(hours=k + j)).isoformat(),  # 10,000 h: 14 months
            )
            for j, pid in enumerate(chunk)
        ]
        assert writer.write_results(conn, results) == len(chunk)


def _run(env: dict[str, str], *args: str) -> tuple[float, dict, str]:
    """Run `autotag ARGS`, echoing its progress (stderr) as it comes; (secs, JSON, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [str(AUTOTAG), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err_lines = []
    assert p.stderr is not None and p.stdout is not None
    chunks: list[str] = []
    stdout = p.stdout
    # Its JSON (10,000 ids) is read meanwhile, or the command blocks on a full pipe.
    reader = threading.Thread(target=lambda: chunks.append(stdout.read()), daemon=True)
    reader.start()
    for line in p.stderr:
        err_lines.append(line)
        print("      " + line.rstrip(), flush=True)
    reader.join()
    out = "".join(chunks)
    p.wait()
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"autotag {' '.join(args)} failed: {''.join(err_lines)[-500:]}")
    return secs, json.loads(out), "".join(err_lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--permanently", action="store_true", help="delete for good, not to trash")
    ap.add_argument("--port-offset", type=int, default=10000)
    args = ap.parse_args()

    run = Path(tempfile.mkdtemp(prefix="autotag-delq-"))
    run_dir.prepare(run)
    env = {
        **os.environ,
        "AUTOTAG_RUN_DIR": str(run),
        "AUTOTAG_MODELS_DIR": str(run / "models"),
        "AUTOTAG_PORT_OFFSET": str(args.port_offset),
    }
    s = load_settings(env)
    env = {**env, **child_env(s)}
    os.environ.update(child_env(s))
    config.settings.cache_clear()
    daemons = [RedisDaemon(s), PostgresDaemon(s)]
    for d in daemons:
        d.start()
    try:
        cluster.prepare_database(s, progress=lambda _m: None)
        rng = np.random.default_rng(29)
        wrong = _ids("wrong", args.photos)
        later = _ids("later", 1000)
        other = _ids("other", 1000)
        t0 = time.perf_counter()
        with database.connect(s.services) as conn:
            _write(conn, wrong, "wrongimport", datetime(2019, 3, 1, 12), rng)
            _write(conn, later, "wrongimport", datetime(2021, 2, 1, 12), rng)
            _write(conn, other, "keeper", datetime(2019, 3, 1, 12), rng)
        print(
            f"wrote {len(wrong) + len(later) + len(other)} photos in "
            f"{time.perf_counter() - t0:.1f}s",
            flush=True,
        )

        q = ["delete", "--query", "wrongimport", "--from", "2019-01-01", "--to", "2020-12-31"]
        if args.permanently:
            q.append("--permanently")
        print("   dry run:", flush=True)
        dry_secs, dry, _ = _run(env, *q, "--dry-run", "--json")
        print(f"   delete ({'permanently' if args.permanently else 'to the trash'}):", flush=True)
        del_secs, done, progress = _run(env, *q, "--yes", "--json")
        want = "purged" if args.permanently else "trashed"
        deleted = {o["id"] for o in done["items"] if o["outcome"] == want}
        with database.connect(s.services) as conn:
            left = dict(
                conn.execute(
                    "SELECT photo_id, status FROM photos WHERE photo_id = ANY(%s)",
                    (wrong + later + other,),
                ).fetchall()
            )
        ok = (
            dry["count"] == len(deleted) == len(wrong)
            and set(dry["ids"]) == deleted == set(wrong)
            and not (deleted & set(left))
            and set(later + other) <= set(left)
        )
        print(
            f"photos {args.photos}: dry run count {dry['count']} in {dry_secs:.1f}s; "
            f"deleted {len(deleted)} in {del_secs:.1f}s "
            f"({len(deleted) / max(del_secs, 1e-9):.0f} photos/s, "
            f"{progress.count(chr(10))} progress lines); "
            f"kept {len(set(later + other) & set(left))} of {len(later) + len(other)} others; "
            f"{'OK' if ok else 'MISMATCH'}; load average {os.getloadavg()[0]:.2f} now",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        for d in reversed(daemons):
            d.stop()


if __name__ == "__main__":
    sys.exit(main())
