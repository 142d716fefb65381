"""Teach it a tag, timed on the user's running cluster (issue 27's goal: ≤ 60 s from the k-th
label to new uploads carrying the tag).

It needs the cluster and the autotagger topology running (`make up`). It does not start or
stop anything. It uploads a few Tux Paint stamps itself: ``--rest + --k`` of one kind
(``--kind``, flowers by default) and ``--per-other`` from each of a few unrelated folders, and
waits until the active bundle has tagged them. Then it works as a user would, through
`autotag`: the first k-1 of the kind are labelled with a fresh nonsense tag
(`labels add --no-learn`); the k-th `labels add` learns. A new tag asks before it is
published (`autotag learned questions`): the bench answers as a user would, from where each
photo came from (yes for a stamp of the kind), with `autotag learned answer`, until the tag is
published. The clock starts just before the answer that publishes it (with
``--no-questions``, the learner's settings learn_questions = learn_spot_check = 0: before the
k-th label, which then publishes at once). When the learner says "add examples" (a spot
check failed, and the answers left it unlearnable), two more photos of the kind are
labelled, as a user would. It prints the questions answered and the seconds from that last
answer (or label) to:

1. the learned bundle being active (``models/ACTIVE`` names it, polled every 50 ms);
2. `autotag search TAG` finding at least half of the kind's photos neither labelled nor
   asked about (and how many of them and of the unrelated photos it finds);
3. a NEW upload of the kind (``--new`` held-out stamps, uploaded as soon as the bundle is
   active) tagged by the learned bundle through the topology and carrying the tag. The bolts
   look at ``models/ACTIVE`` every few seconds, so a photo that the previous bundle tags is
   uploaded again, as the tests do.

Finally `autotag learned forget TAG` removes what it taught: the labels, the stored tags and
the head (a new bundle without it is activated), and `autotag delete --permanently` removes
the photos it uploaded that were not in the library before. This runs on failure too.

Timings are only results on an idle machine: it prints the load average beside them.

    python bench/learned_latency.py [--k 5] [--kind plants/flowers] [--timeout 180] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autotag.checksums import file_sha256
from autotag.config import Settings, child_env, settings
from autotag.errors import AutotagError
from autotag.learning import samples
from autotag.pipeline import intake
from autotag.storage import database, lookups
from autotag.vision.bundle import active_bundle_id

OTHERS = ("animals/birds", "town/roadsigns", "symbols/chess", "household/tools", "space/planets")
TOPOLOGY = "autotagger"


class BenchError(Exception):
    """A one-line reason the measurement could not be made."""


def stamps(folder: str) -> list[Path]:
    """A stamp folder's photos, without the mirrored and flipped copies."""
    root = samples.TUXPAINT_STAMPS / folder
    if not root.is_dir():
        raise BenchError(f"no Tux Paint stamps at {root} (apt install tuxpaint-stamps-default)")
    files = sorted(root.glob("*.png"))
    return [f for f in files if not f.name.endswith(("_mirror.png", "_flip.png"))]


ENV: dict[str, str] = {}  # settings for every autotag command run (--no-questions)


def run_cli(s: Settings, timeout: float, *args: str) -> Any:
    """``autotag ARGS --json`` as a user runs it; its JSON, or BenchError with its error."""
    exe = Path(sys.executable).parent / "autotag"
    if not exe.exists():
        exe = s.venv / "bin" / "autotag"
    try:
        out = subprocess.run(
            [str(exe), *args, "--json"],
            env={**child_env(s), **ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"`autotag {' '.join(args[:3])}` took more than {timeout:g}s") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BenchError(f"`autotag {' '.join(args[:3])}` failed: {last}")
    return json.loads(out.stdout or "null")


def check_cluster(s: Settings) -> str:
    """The active bundle's id, if the topology is running; BenchError if not."""
    from autotag.ops.nimbus import NimbusClient

    try:
        status = NimbusClient(s).topology(TOPOLOGY).status
    except AutotagError as exc:
        raise BenchError(f"the {TOPOLOGY} topology is not running (make up): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Nimbus unreachable: one line, not a traceback
        raise BenchError(f"Nimbus does not answer (make up): {exc}") from None
    if status != "ACTIVE":
        raise BenchError(f"the {TOPOLOGY} topology is {status}, not ACTIVE")
    active = active_bundle_id(s.models_dir)
    if active is None:
        raise BenchError(f"no active model bundle in {s.models_dir}")
    return active


def upload_tagged(s: Settings, files: list[Path], model: str, timeout: float) -> list[str]:
    """Upload (forced: tagged again) and wait until each photo is tagged by ``model``; one
    that another bundle tagged while the bolts switched is uploaded again."""
    ids: dict[str, str] = {}
    for rec in intake.upload([str(f) for f in files], new_intake(s), force=True):
        if rec.photo_id is None:
            raise BenchError(f"upload of {rec.path} failed: {rec.status}")
        ids[rec.photo_id] = rec.path
    wait_tagged(s, ids, model, timeout)
    return list(ids)


def new_intake(s: Settings) -> intake.Intake:
    return intake.Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)


def wait_tagged(
    s: Settings, ids: dict[str, str], model: str, timeout: float, first_with: str | None = None
) -> dict[str, lookups.PhotoInfo]:
    """Wait until the photos ``{id: path}`` are tagged by ``model`` (with ``first_with``:
    until one of them carries that tag, or all are tagged). Returns the records."""
    deadline = time.monotonic() + timeout
    sent = dict.fromkeys(ids, time.monotonic())
    done: dict[str, lookups.PhotoInfo] = {}
    with database.connect(s.services) as conn:
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                left = len(ids) - len(done)
                raise BenchError(
                    f"{left} of {len(ids)} photos not tagged by {model} in {timeout:g}s"
                )
            stale = []
            for pid in ids:
                if pid in done:
                    continue
                info = lookups.show(conn, pid)
                if info is None or info.status != "tagged":
                    continue
                if info.model_version == model:
                    done[pid] = info
                    if first_with is not None and first_with in dict(info.tags):
                        return done
                elif time.monotonic() - sent[pid] > 5:
                    stale.append(ids[pid])
                    sent[pid] = time.monotonic()
            if stale:
                intake.upload(stale, new_intake(s), force=True)
            time.sleep(0.2)
    return done


class ActiveWatch(threading.Thread):
    """Notes when ``models/ACTIVE`` first names a bundle other than ``before``."""

    def __init__(self, models_dir: Path, before: str) -> None:
        super().__init__(daemon=True)
        self.models_dir, self.before = models_dir, before
        self.changed: tuple[float, str] | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = active_bundle_id(self.models_dir)
            if now is not None and now != self.before:
                self.changed = (time.monotonic(), now)
                return
            time.sleep(0.05)


def already_stored(s: Settings, files: list[Path]) -> set[str]:
    """Which of these files are photos of the library already (a photo's id is its bytes'
    sha256): the bench leaves those in place."""
    ids = {file_sha256(f) for f in files}
    with database.connect(s.services) as conn:
        return {pid for pid in ids if lookups.show(conn, pid) is not None}


def fresh_tag() -> str:
    """A word no model knows (letters only, so search reads it as one word)."""
    return "zq" + "".join(random.choices(string.ascii_lowercase, k=8))


def measure(s: Settings, args: argparse.Namespace, out: dict[str, Any]) -> None:
    k = args.k
    kind = stamps(args.kind)
    need = k + args.rest + args.new
    if len(kind) < need:
        raise BenchError(f"{args.kind} has {len(kind)} stamps; --k + --rest + --new need {need}")
    others = [f for d in OTHERS if d != args.kind for f in stamps(d)[: args.per_other]]
    before = check_cluster(s)
    out["bundle_before"] = before
    tag = out["tag"]
    if tag in {r["tag"] for r in run_cli(s, args.timeout, "learned")}:
        raise BenchError(f"the tag {tag!r} is already known to the learner; choose another --tag")

    every = [*kind[:need], *others]
    there = already_stored(s, every)
    out["new_photos"] = sorted({file_sha256(f) for f in every} - there)  # removed at the end
    print(f"uploading {k + args.rest + len(others)} stamps ...", file=sys.stderr)
    kind_ids = upload_tagged(s, kind[: k + args.rest], before, args.timeout)
    other_ids = upload_tagged(s, others, before, args.timeout)
    labelled = kind_ids[:k]

    out["labelled"] = True  # from here on, clean up
    run_cli(s, args.timeout, "labels", "add", "--tag", tag, *labelled[: k - 1], "--no-learn")
    watch = ActiveWatch(s.models_dir, before)
    watch.start()
    t0, t0_wall = time.monotonic(), time.time()
    report = run_cli(s, args.timeout, "labels", "add", "--tag", tag, labelled[-1])["learn"]
    out["label_command_s"] = round(time.monotonic() - t0, 2)
    kind_set = set(kind_ids)
    asked: list[str] = []
    touched = set(labelled)  # labelled or asked: not counted when search is measured
    spare = kind_ids[k : k + args.rest // 2]  # at most half of the rest as new examples
    for _round in range(12):
        mine = next((o for o in report["outcomes"] if o["tag"] == tag), None)
        more = [p for p in spare if p not in touched][:2]
        if mine is not None and mine["status"] == "not-yet" and len(more) == 2:
            # "add examples", as the learner says: two more photos of the kind, labelled.
            touched.update(more)
            asked.append(f"+{len(more)} examples")
            t0, t0_wall = time.monotonic(), time.time()
            report = run_cli(s, args.timeout, "labels", "add", "--tag", tag, *more)["learn"]
            out["answer_command_s"] = round(time.monotonic() - t0, 2)
            continue
        if mine is None or mine["status"] != "asking":
            break
        q = run_cli(s, args.timeout, "learned", "questions", tag)
        answers = [
            a
            for p in q["photos"]
            for a in (
                "--yes"
                if p["photo_id"] in kind_set or args.kind in (p["source"] or "")
                else "--no",
                p["photo_id"],
            )
        ]
        touched.update(p["photo_id"] for p in q["photos"])
        asked.append(f"{q['phase']} {len(q['photos'])}")
        t0, t0_wall = time.monotonic(), time.time()
        report = run_cli(s, args.timeout, "learned", "answer", tag, *answers)["learn"]
        out["answer_command_s"] = round(time.monotonic() - t0, 2)
    out["questions"] = asked
    rest = set(kind_ids) - touched
    outcomes = {o["tag"]: o for o in report["outcomes"]}
    mine = outcomes.get(tag)
    if mine is None or mine["status"] != "learned" or not report["bundle_id"]:
        why = mine["message"] if mine else "no outcome for the tag"
        raise BenchError(f"the tag was not learned ({k} labels, then {asked}): {why}")
    bundle = str(report["bundle_id"])
    out["bundle_learned"] = bundle
    out["learner_s"] = report["seconds"]
    out["rescored"] = report["rescored"]
    out["estimated"] = {"precision": mine["precision"], "recall": mine["recall"]}

    watch.join(args.timeout)
    watch.stop.set()
    if watch.changed is None or watch.changed[1] != bundle:
        raise BenchError(f"models/ACTIVE did not name {bundle} (it names {watch.changed})")
    t_active = watch.changed[0]
    out["to_active_s"] = round(t_active - t0, 2)

    # A new upload of the kind, as soon as the learned bundle is active.
    fresh = kind[k + args.rest : need]
    ids = {}
    for rec in intake.upload([str(f) for f in fresh], new_intake(s), force=True):
        if rec.photo_id is None:
            raise BenchError(f"upload of {rec.path} failed: {rec.status}")
        ids[rec.photo_id] = rec.path

    want = -(-len(rest) // 2)  # at least half of the kind's photos neither labelled nor asked
    deadline = time.monotonic() + args.timeout
    while True:
        hits = {
            h["photo_id"]
            for h in run_cli(s, args.timeout, "search", tag, "--exact", "--limit", "1000")
            if "photo_id" in h
        }
        if len(hits & rest) >= want:
            out["to_search_s"] = round(time.monotonic() - t0, 2)
            break
        if time.monotonic() > deadline:
            raise BenchError(f"search found {len(hits & rest)} of {len(rest)} photos of the kind")
        time.sleep(0.2)
    out["search_found"] = {
        "kind": f"{len(hits & rest)}/{len(rest)}",
        "unrelated": f"{len(hits & set(other_ids))}/{len(other_ids)}",
    }

    tagged = wait_tagged(s, ids, bundle, args.timeout, first_with=tag)
    carrying = [i for i in tagged.values() if tag in dict(i.tags) and i.tagged_at is not None]
    out["new_uploads"] = f"{len(carrying)} of {len(tagged)} tagged by the learned bundle carry it"
    # When the DB writer stored it (Postgres' clock: the same host), not when we looked.
    first = min((i.tagged_at.timestamp() for i in carrying if i.tagged_at), default=None)
    out["to_new_upload_s"] = None if first is None else round(first - t0_wall, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--k", type=int, default=5, help="labels given (the k-th starts the clock)")
    ap.add_argument("--kind", default="plants/flowers", help="Tux Paint stamp folder taught")
    ap.add_argument("--rest", type=int, default=14, help="unlabelled photos of the kind")
    ap.add_argument("--new", type=int, default=2, help="new uploads of the kind afterwards")
    ap.add_argument("--per-other", type=int, default=3, help="stamps of each unrelated folder")
    ap.add_argument("--tag", default=None, help="the tag taught (default: a fresh nonsense word)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per step")
    ap.add_argument(
        "--no-questions",
        action="store_true",
        help="publish without asking (learn_questions = learn_spot_check = 0)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.no_questions:
        ENV.update(AUTOTAG_LEARN_QUESTIONS="0", AUTOTAG_LEARN_SPOT_CHECK="0")
    if args.k < 2 or args.rest < 2 or args.new < 1 or args.per_other < 1 or args.timeout <= 0:
        ap.error("--k and --rest at least 2, --new and --per-other at least 1, --timeout > 0")
    s = settings()
    out: dict[str, Any] = {"tag": args.tag or fresh_tag(), "k": args.k}
    failed = None
    try:
        measure(s, args, out)
    except (BenchError, AutotagError, OSError, ValueError, KeyError) as exc:
        failed = str(exc)
    finally:
        if out.pop("labelled", False):
            try:
                gone = run_cli(s, args.timeout, "learned", "forget", out["tag"])
                out["forgotten"] = {
                    "bundle_id": gone["bundle_id"],
                    "labels": gone["labels_deleted"],
                }
            except BenchError as exc:
                failed = failed or f"cleanup: {exc} (run: autotag learned forget {out['tag']})"
        new = out.pop("new_photos", [])
        if new:
            try:
                run_cli(s, args.timeout, "delete", "--permanently", *new)
                out["deleted_photos"] = len(new)
            except BenchError as exc:
                failed = failed or f"cleanup: {exc} (its {len(new)} uploads stay in the library)"
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({**out, "error": failed}))
    else:
        show(out)
    if failed:
        print(f"learned_latency: {failed}", file=sys.stderr)
        return 1
    return 0


def show(out: dict[str, Any]) -> None:
    k, tag = out["k"], out["tag"]

    def s(key: str) -> str:
        v = out.get(key)
        return "-" if v is None else f"{v:.2f} s"

    print(f"teaching {tag!r} from {k} labels (bundle {out.get('bundle_learned', '-')})")
    asked = out.get("questions") or []
    start = "last answer" if asked else f"{k}th label"
    print(f"  questions answered before publishing: {', '.join(asked) or 'none'}")
    print(f"  {start} -> learned bundle active:      {s('to_active_s')}")
    found = out.get("search_found", {})
    print(
        f"  {start} -> search finds the kind:       {s('to_search_s')}"
        f"  (kind {found.get('kind', '-')}, unrelated {found.get('unrelated', '-')})"
    )
    print(
        f"  {start} -> new upload carries the tag: {s('to_new_upload_s')}"
        f"  ({out.get('new_uploads', '-')})"
    )
    r = out.get("rescored") or {}
    if r:
        print(
            f"  the {start} command: {out.get('answer_command_s', out['label_command_s']):.2f} s"
            f" (learner {out['learner_s']:.2f} s;"
            f" re-scored {r['photos']} stored photos, {r['photos_per_second']} photos/s)"
        )
    est = out.get("estimated")
    if est:
        print(f"  estimated precision {est['precision']}, recall {est['recall']}")
    if "forgotten" in out:
        print(
            f"  forgotten: {out['forgotten']['labels']} labels; bundle {out['forgotten']['bundle_id']}"
        )
    if out.get("deleted_photos"):
        print(f"  deleted the {out['deleted_photos']} photos it uploaded")
    print(f"  load average {out['load_average']} (figures compare only on an idle machine)")


if __name__ == "__main__":
    sys.exit(main())
