"""Chaos run: photos stream in while every part of the system is killed or restarted; then
nothing may be missing and nothing doubled.

On an isolated environment of its own (temporary run dir, shifted ports; the user's cluster is
untouched): cluster up, default model, the autotagger topology; then per run, an uploader
streams N photos while these faults are injected one after another, each once progress has
resumed after the previous one:

    kill -9 the worker JVM · kill -9 a Python autotag bolt · restart the Supervisor
    restart Nimbus · restart Redis · restart Postgres

and, in the middle of the stream, a poison photo: the bolt that tags it kills its own process
(SIGKILL, as a native decoder crash would; a fault hook armed only by the environment variable
AUTOTAG_CHAOS_KILL_ON_PHOTO that this run gives the cluster), so it takes its worker down on
each of its three attempts. It must end dead-lettered, alone: every other photo tagged.

It waits for the queue to drain and reports photos sent / tagged / failed / lost, duplicate
tag rows, dead letters and each fault's recovery time (fault → tagging progresses again).
Exit status 1 if anything was lost or duplicated, if a photo other than the poison failed or
was dead-lettered, or if the poison was not dead-lettered after its three attempts.

    python bench/chaos.py --photos 2000 --runs 3

With ``--delete-fraction F``, a deleter deletes about F of the photos while the stream and
the faults go on, each a random moment (0-5 s) after its upload (so queued, in flight or
already tagged), half to the trash and half permanently. It then also reports: lost among the
photos not deleted (must be 0), resurrected among the deleted (a ``photos`` row again: must be
0), deleted photos still on the stream or dead-lettered (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from autotag import config
from autotag.config import Settings, child_env, load_settings
from autotag.errors import AutotagError
from autotag.learning import samples
from autotag.ops import cluster, run_dir
from autotag.ops.daemons.base import wait_for
from autotag.ops.daemons.postgres import PostgresDaemon
from autotag.ops.daemons.redis import RedisDaemon
from autotag.ops.daemons.storm import NimbusDaemon, SupervisorDaemon
from autotag.ops.topology import submit, wait_scheduled
from autotag.pipeline import intake
from autotag.storage import database, deletion
from autotag.storage.item_stream import ItemStream

TOPOLOGY = "autotagger"
CHAOS_KILL_ENV = "AUTOTAG_CHAOS_KILL_ON_PHOTO"  # read by src/bolts/autotag.py
POISON = b"autotag chaos poison photo: the bolt tagging it kills its own process\n"
POISON_ID = hashlib.sha256(POISON).hexdigest()


# -- finding the processes to kill ---------------------------------------------------------


def _procs(run_dir: Path, *needles: str, exclude: str | None = None) -> list[int]:
    """Pids whose command line holds every needle and whose environment is this run's."""
    marker = f"AUTOTAG_RUN_DIR={run_dir}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            all(n in cmd for n in needles)
            and (exclude is None or exclude not in cmd)
            and marker in env
        ):
            found.append(int(d.name))
    return found


def _wait_procs(run_dir: Path, *needles: str, exclude: str | None = None) -> list[int]:
    """As _procs, waiting up to 3 minutes for one (the poison photo may have the worker down)."""
    found: list[int] = []

    def look() -> bool:
        found[:] = _procs(run_dir, *needles, exclude=exclude)
        return bool(found)

    wait_for(look, timeout=180, interval=1)
    return found


def kill_worker(s: Settings) -> str:
    pids = _wait_procs(
        s.run_dir, "org.apache.storm.daemon.worker.Worker", exclude="org.apache.storm.LogWriter"
    )
    if not pids:
        raise AutotagError("no worker JVM found")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return f"worker pid {pids}"


def kill_bolt(s: Settings) -> str:
    pids = _wait_procs(s.run_dir, "streamparse_run", "bolts.autotag.AutotagBolt")
    if not pids:
        raise AutotagError("no autotag bolt process found")
    os.kill(pids[0], signal.SIGKILL)
    return f"bolt pid {pids[0]}"


def restart(daemon_cls: type, group: bool = True) -> Callable[[Settings], str]:
    def go(s: Settings) -> str:
        d = daemon_cls(s)
        d.stop(group=group)
        d.start(wait=True)
        return f"{d.name} pid {d.pid()}"

    return go


FAULTS: list[tuple[str, Callable[[Settings], str]]] = [
    ("kill -9 worker JVM", kill_worker),
    ("kill -9 Python bolt", kill_bolt),
    ("restart Supervisor", restart(SupervisorDaemon, group=False)),
    ("restart Nimbus", restart(NimbusDaemon)),
    ("restart Redis", restart(RedisDaemon)),
    ("restart Postgres", restart(PostgresDaemon)),
]


# -- measuring ------------------------------------------------------------------------------


def _count(s: Settings, ids: list[str], status: str) -> int | None:
    try:
        with database.connect(s.services, migrate_schema=False, connect_timeout=2) as conn:
            return conn.execute(
                "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = %s",
                (ids, status),
            ).fetchone()[0]
    except Exception:  # noqa: BLE001 - Postgres may be the thing being restarted
        return None


class Uploader(threading.Thread):
    """Streams photos in at a steady rate, retrying each until it is queued; the poison photo
    goes in after photo number ``poison_at``."""

    def __init__(
        self, s: Settings, paths: list[Path], rate: float, poison: Path, poison_at: int
    ) -> None:
        super().__init__(daemon=True)
        self.s, self.paths, self.rate = s, paths, rate
        self.intake = intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)
        self.poison, self.poison_at = poison, poison_at
        self.ids: list[str] = []
        self.retries = 0

    def _upload(self, path: Path) -> str:
        while True:
            try:
                (rec,) = intake.upload([str(path)], self.intake)
                if rec.status in ("queued", "duplicate", "already-tagged"):
                    return rec.photo_id
                raise AutotagError(f"{path.name}: {rec.status} {rec.reason}")
            except Exception:  # noqa: BLE001 - a service is down: try again
                self.retries += 1
                time.sleep(0.5)

    def run(self) -> None:
        for i, p in enumerate(self.paths):
            t_next = time.monotonic() + 1.0 / self.rate
            self.ids.append(self._upload(p))
            if i == self.poison_at:
                assert self._upload(self.poison) == POISON_ID
                print(f"    uploaded the poison photo after {i + 1} photos", flush=True)
            if i % 200 == 0:
                print(f"    uploaded {i}/{len(self.paths)}", flush=True)
            time.sleep(max(0.0, t_next - time.monotonic()))


class Deleter(threading.Thread):
    """Deletes about ``fraction`` of the uploaded photos while they stream in: each a random
    0-5 s after its upload, alternately to the trash and permanently; retried while a
    service is down (the faults), like a user pressing delete again."""

    def __init__(self, s: Settings, up: Uploader, fraction: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.s, self.up, self.fraction = s, up, fraction
        self.rng = random.Random(seed)
        self.trashed: list[str] = []
        self.purged: list[str] = []
        self.retries = 0
        # When each was deleted: 'queued', 'being tagged' (a bolt's in-progress mark) or
        # 'tagged' (its result already stored).
        self.when: dict[str, int] = {}

    def _when(self, conn: psycopg.Connection[Any], stream: ItemStream, photo_id: str) -> str:
        row = conn.execute("SELECT status FROM photos WHERE photo_id = %s", (photo_id,)).fetchone()
        if row and row[0] != "queued":
            return str(row[0])
        return (
            "being tagged" if stream.redis.exists(f"{stream.name}:working:{photo_id}") else "queued"
        )

    def _remove(self, photo_id: str, permanently: bool) -> None:
        while True:
            try:
                with database.connect(self.s.services, migrate_schema=False) as conn:
                    d = deletion.for_settings(self.s, conn)
                    assert d.photo_stream is not None
                    when = self._when(conn, d.photo_stream, photo_id)
                    (o,) = d.purge([photo_id]) if permanently else d.trash([photo_id])
                if o.outcome not in ("trashed", "purged", "already in trash", "already purged"):
                    raise AutotagError(f"{photo_id}: {o.outcome}")
                (self.purged if permanently else self.trashed).append(photo_id)
                self.when[when] = self.when.get(when, 0) + 1
                return
            except Exception:  # noqa: BLE001 - a service is down: try again
                self.retries += 1
                time.sleep(0.5)

    def run(self) -> None:
        due: list[tuple[float, str]] = []
        seen = 0
        n = 0
        while self.up.is_alive() or seen < len(self.up.ids) or due:
            for pid in self.up.ids[seen:]:
                if self.rng.random() < self.fraction:
                    due.append((time.monotonic() + self.rng.uniform(0.0, 5.0), pid))
            seen = len(self.up.ids)
            now = time.monotonic()
            for t, pid in sorted(due):
                if t <= now:
                    self._remove(pid, permanently=n % 2 == 1)
                    n += 1
            due = [(t, pid) for t, pid in due if t > now]
            time.sleep(0.05)


def _progress_or_reason(s: Settings, ok: bool, what: str) -> None:
    """No progress: say why, with Nimbus's reason when it cannot schedule the topology."""
    if not ok:
        wait_scheduled(s, TOPOLOGY, 60)
        raise AutotagError(f"no tagging progress for 600 s after {what} (topology is scheduled)")


def one_run(
    s: Settings, run: int, n: int, rate: float, photo_dir: Path, delete_fraction: float = 0.0
) -> dict[str, object]:
    paths = samples.make_distinct_photos(n, photo_dir / f"run{run}", long_side=320, seed=1000 + run)
    poison = photo_dir / "poison.jpg"
    poison.write_bytes(POISON)
    up = Uploader(s, paths, rate, poison, poison_at=n // 2)
    t_start = time.monotonic()
    started_at = time.time()
    up.start()
    deleter = Deleter(s, up, delete_fraction, seed=2900 + run) if delete_fraction > 0 else None
    if deleter is not None:
        deleter.start()
    # Faults start once the topology is tagging (not while its first worker is still starting).
    _progress_or_reason(
        s,
        wait_for(
            lambda: len(up.ids) >= min(n, 100) and (_count(s, up.ids[:100], "tagged") or 0) >= 20,
            timeout=600,
            interval=0.5,
        ),
        "the start",
    )
    recoveries: dict[str, float] = {}

    def not_deleted(ids: list[str]) -> list[str]:
        """Of these, the photos the deleter has not deleted (yet): the ones to be tagged."""
        gone = set(deleter.trashed + deleter.purged) if deleter is not None else set()
        return [i for i in ids if i not in gone]

    for name, fault in FAULTS:
        ids = list(up.ids)
        before = _count(s, not_deleted(ids), "tagged") or 0
        t0 = time.monotonic()
        what = fault(s)
        ok = wait_for(
            lambda ids=ids, before=before: (
                (_count(s, not_deleted(ids), "tagged") or 0) >= before + 5
                or (_count(s, not_deleted(ids), "tagged") or 0) >= len(not_deleted(ids))
            ),
            timeout=600,
            interval=0.5,
        )
        recoveries[name] = time.monotonic() - t0 if ok else float("inf")
        print(f"    {name:<22} ({what}): progress again after {recoveries[name]:.1f}s", flush=True)
        _progress_or_reason(s, ok, name)
    up.join()
    deleted: list[str] = []
    if deleter is not None:
        deleter.join()
        deleted = deleter.trashed + deleter.purged
    all_ids = up.ids
    ids = [i for i in all_ids if i not in set(deleted)]  # what must be tagged
    drained = wait_for(
        lambda: _count(s, ids, "queued") == 0 and _count(s, [POISON_ID], "queued") == 0,
        timeout=1800,
        interval=2,
    )
    with database.connect(s.services) as conn:
        tagged = conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = 'tagged'", (ids,)
        ).fetchone()[0]
        failed = conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s) AND status = 'failed'", (ids,)
        ).fetchone()[0]
        dup = conn.execute(
            "SELECT count(*) - count(DISTINCT (photo_id, model_version, tag)) FROM tags "
            "WHERE photo_id = ANY(%s)",
            (ids,),
        ).fetchone()[0]
        untagged_vectors = conn.execute(
            "SELECT count(*) FROM photos p WHERE photo_id = ANY(%s) AND status = 'tagged' AND NOT EXISTS "
            "(SELECT 1 FROM photo_vectors v WHERE v.photo_id = p.photo_id)",
            (ids,),
        ).fetchone()[0]
        resurrected = conn.execute(
            "SELECT count(*) FROM photos WHERE photo_id = ANY(%s)", (deleted,)
        ).fetchone()[0]
        deleted_tags = conn.execute(
            "SELECT count(*) FROM tags WHERE photo_id = ANY(%s)", (deleted,)
        ).fetchone()[0]
        poison_row = conn.execute(
            "SELECT status, attempts, reason FROM photos WHERE photo_id = %s", (POISON_ID,)
        ).fetchone()
    dead = [
        d for d in ItemStream(s.services, s.queue).dead_letters(100000) if d.at >= started_at - 1
    ]
    dead_ids = {d.item_id for d in dead}
    stream = ItemStream(s.services, s.queue)
    on_stream = {str(f.get("photo_id")) for _e, f in stream.redis.xrange(stream.name)}
    poison_status, poison_attempts, poison_reason = poison_row or (None, 0, None)
    return {
        "sent": n,
        "queued_ids": len(set(all_ids)),
        "deleted": len(deleted),
        "trashed": len(deleter.trashed) if deleter else 0,
        "purged": len(deleter.purged) if deleter else 0,
        "delete_retries": deleter.retries if deleter else 0,
        "deleted_when": dict(deleter.when) if deleter else {},
        "resurrected": resurrected,
        "tags_of_deleted": deleted_tags,
        "deleted_on_stream_or_dead": len((on_stream | dead_ids) & set(deleted)),
        "tagged": tagged,
        "failed": failed,
        "lost": n - len(deleted) - tagged - failed,
        "duplicate_tag_rows": dup,
        "tagged_without_vector": untagged_vectors,
        "dead_letters_this_run": len(dead),
        "other_photos_dead_lettered": len(dead_ids - {POISON_ID}),
        "poison_status": poison_status,
        "poison_attempts": poison_attempts,
        "poison_reason": poison_reason,
        "poison_dead_lettered": POISON_ID in dead_ids
        and poison_status == "failed"
        and poison_attempts == 3,
        "upload_retries": up.retries,
        "drained": drained,
        "minutes": (time.monotonic() - t_start) / 60,
        "recoveries": recoveries,
    }


def passed(r: dict[str, object]) -> bool:
    """Nothing lost or doubled, every photo but the poison tagged, the poison alone dead."""
    return bool(
        r["drained"]
        and not r["lost"]
        and not r["duplicate_tag_rows"]
        and not r["failed"]
        and not r["other_photos_dead_lettered"]
        and r["poison_dead_lettered"]
        and not r.get("resurrected")
        and not r.get("tags_of_deleted")
        and not r.get("deleted_on_stream_or_dead")
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=25.0, help="uploads per second")
    ap.add_argument(
        "--port-offset",
        type=int,
        default=10000,
        help="shift every port (keep them below the kernel's ephemeral range)",
    )
    ap.add_argument("--keep", action="store_true", help="leave the environment running")
    ap.add_argument(
        "--delete-fraction",
        type=float,
        default=0.0,
        help="delete about this fraction of the photos while they stream in (0-1)",
    )
    args = ap.parse_args()

    run = Path(tempfile.mkdtemp(prefix="autotag-chaos-"))
    run_dir.prepare(run)
    env = {
        **os.environ,
        "AUTOTAG_RUN_DIR": str(run),
        "AUTOTAG_MODELS_DIR": str(run / "models"),
        "AUTOTAG_PORT_OFFSET": str(args.port_offset),
    }
    s = load_settings(env)
    os.environ.update(child_env(s))
    os.environ[CHAOS_KILL_ENV] = POISON_ID  # the workers inherit it from the Supervisor
    config.settings.cache_clear()
    print(f"chaos environment: {run} (ports +{args.port_offset})", flush=True)
    print(f"poison photo: {POISON_ID}", flush=True)
    cluster.up(s, progress=lambda m: print("   ", m, flush=True))
    from autotag.vision.bundle import set_active
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    set_active(s.models_dir, build_default_bundle(s.models_dir, onnx_model_path(s.model_dirs)))
    submit(s, TOPOLOGY)  # waits until Nimbus has scheduled it, or says why it cannot
    results = []
    try:
        for i in range(args.runs):
            print(f"== run {i + 1}/{args.runs}: {args.photos} photos at {args.rate}/s", flush=True)
            r = one_run(s, i, args.photos, args.rate, run / "photos", args.delete_fraction)
            results.append(r)
            recoveries = r["recoveries"]
            assert isinstance(recoveries, dict)
            rec = ", ".join(f"{k} {v:.0f}s" for k, v in recoveries.items())
            print(
                f"   sent {r['sent']}, tagged {r['tagged']}, failed {r['failed']}, lost {r['lost']}, "
                f"duplicate tag rows {r['duplicate_tag_rows']}, tagged without vector "
                f"{r['tagged_without_vector']}, dead letters {r['dead_letters_this_run']} "
                f"(other than the poison: {r['other_photos_dead_lettered']}), upload retries "
                f"{r['upload_retries']}, {r['minutes']:.1f} min\n"
                f"   poison photo: {r['poison_status']} after {r['poison_attempts']} attempts "
                f"({r['poison_reason']})\n   recovery: {rec}\n"
                f"   deleted {r['deleted']} while streaming ({r['trashed']} to the trash, "
                f"{r['purged']} permanently; {r['delete_retries']} delete retries; "
                f"deleted when {r['deleted_when']}): lost among "
                f"the others {r['lost']}, resurrected {r['resurrected']}, their tag rows "
                f"{r['tags_of_deleted']}, on the stream or dead-lettered "
                f"{r['deleted_on_stream_or_dead']}\n"
                f"   {'PASSED' if passed(r) else 'FAILED'}",
                flush=True,
            )
    finally:
        if not args.keep:
            cluster.down(s, progress=lambda m: None)
    good = [r for r in results if passed(r)]
    print(f"== {len(good)}/{args.runs} runs passed", flush=True)
    return 0 if len(good) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
