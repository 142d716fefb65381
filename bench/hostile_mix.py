"""Throughput of good photos with hostile files mixed in, against a clean run, side by side.

Needs the cluster and the autotagger topology running (`make up`).

    python bench/hostile_mix.py --n 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from autotag.config import settings
from autotag.learning import samples
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import wait_scheduled
from autotag.pipeline import intake
from autotag.storage import database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.pipeline import activate_and_wait, pause, sustained_rate, topology_run  # noqa: E402
from tests.hostile import make_hostile_corpus  # noqa: E402


def mixed_run(
    good: list[Path], hostile_dir: Path, nimbus: NimbusClient, timeout: float
) -> tuple[float, dict[str, int]]:
    """Hostile files spread among the good ones, uploaded with the topology paused as in
    ``topology_run``: good photos/s (first to last good photo tagged) and the hostile files'
    outcome counts."""
    s = settings()
    hostile = sorted(p for p in hostile_dir.iterdir() if p.is_file())
    every = max(1, len(good) // max(1, len(hostile)))
    order: list[Path] = []
    for i, p in enumerate(good):
        order.append(p)
        if i % every == 0 and hostile:
            order.append(hostile.pop())
    order += hostile
    pause(nimbus)
    up = intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)
    records = intake.upload([str(p) for p in order], up, force=True)
    good_names = {p.name for p in good}
    good_ids = [r.photo_id for r in records if Path(r.path).name in good_names]
    bad_ids = [r.photo_id for r in records if Path(r.path).name not in good_names and r.photo_id]
    activate_and_wait(s, nimbus, good_ids + bad_ids, timeout)
    with database.connect(s.services) as conn:
        rate = sustained_rate(conn, good_ids)
        outcome = dict(
            conn.execute(
                "SELECT status, count(*) FROM photos WHERE photo_id = ANY(%s) GROUP BY status",
                (list(set(bad_ids)),),
            ).fetchall()
        )
    return rate, outcome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="good photos per run")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    wait_scheduled(settings(), "autotagger", 60)  # fails with Nimbus's reason if unscheduled
    seed = int(time.time())
    with tempfile.TemporaryDirectory(prefix="autotag-hostile-") as tmp:
        clean = samples.make_distinct_photos(args.n, Path(tmp) / "clean", 640, seed)
        mixed = samples.make_distinct_photos(args.n, Path(tmp) / "mixed", 640, seed + 1)
        make_hostile_corpus(Path(tmp) / "hostile", max_bytes=settings().limits.max_file_bytes)
        nimbus = NimbusClient(settings())
        clean_rate = topology_run(clean, settings(), nimbus, args.timeout).photos_per_sec
        print(f"clean run: {args.n} good photos, {clean_rate:.1f} photos/s")
        mixed_rate, outcome = mixed_run(mixed, Path(tmp) / "hostile", nimbus, args.timeout)
        print(
            f"mixed run: {args.n} good photos + hostile corpus ({outcome}): "
            f"{mixed_rate:.1f} good photos/s"
        )
        print(f"ratio mixed / clean: {mixed_rate / clean_rate:.2f}")


if __name__ == "__main__":
    main()
