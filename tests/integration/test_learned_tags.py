"""Teaching a tag on the real cluster: five photos labelled with a new tag by
`autotag labels add` become a learned tag that search finds on the other stored photos of that
kind (re-scored from their stored vectors), that the running topology gives a new upload, and
that `autotag learned forget` removes everywhere; five unrelated photos labelled with a
nonsense tag give "cannot learn yet"."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.learning import samples
from autotag.pipeline import intake
from autotag.storage import database, lookups
from autotag.storage import learned as learned_store
from autotag.vision.bundle import active_bundle_id
from tests.cli import autotag, new_intake, wait_model

pytestmark = pytest.mark.cluster

TAG = "bloomy"  # a word no model knows
OTHER = ("animals/birds", "town/roadsigns", "symbols/chess", "household/tools", "space/planets")


def _stamps(folder: str) -> list[Path]:
    files = sorted((samples.TUXPAINT_STAMPS / folder).glob("*.png"))
    return [f for f in files if not f.name.endswith(("_mirror.png", "_flip.png"))]


def _upload(s: Settings, files: list[Path], model: str, timeout: float = 180) -> list[str]:
    """Upload (again) and wait until each photo is tagged by ``model``. The bolts follow
    models/ACTIVE within seconds, so a photo uploaded just after another bundle was
    activated may still be tagged by the previous one: such a photo is uploaded again."""
    paths = {}
    for rec in intake.upload([str(f) for f in files], new_intake(s), force=True):
        assert rec.photo_id is not None, rec
        paths[rec.photo_id] = rec.path
    deadline = time.monotonic() + timeout
    waiting = dict(paths)
    sent = dict.fromkeys(paths, time.monotonic())
    with database.connect(s.services) as conn:
        while waiting:
            assert time.monotonic() < deadline, f"not tagged by {model}: {sorted(waiting)}"
            stale = []
            for pid in list(waiting):
                info = lookups.show(conn, pid)
                if info is not None and info.status == "tagged":
                    if info.model_version == model:
                        del waiting[pid]
                    elif time.monotonic() - sent[pid] > 5:
                        stale.append(str(waiting[pid]))
                        sent[pid] = time.monotonic()
            if stale:
                intake.upload(stale, new_intake(s), force=True)
            time.sleep(1)
    return list(paths)


def _search(s: Settings, word: str) -> set[str]:
    out = autotag(s, "search", word, "--exact", "--json", "--limit", "500")
    assert out.returncode == 0, out.stderr
    return {h["photo_id"] for h in json.loads(out.stdout or "[]") if "photo_id" in h}


def test_labels_become_a_learned_tag_everywhere(autotagger: Settings, restore_default: str) -> None:
    s = autotagger
    flowers = _stamps("plants/flowers")
    assert len(flowers) >= 16
    unrelated = [f for d in OTHER for f in _stamps(d)[:4]]
    flower_ids = _upload(s, flowers[:15], restore_default)
    other_ids = _upload(s, unrelated, restore_default)

    # Five random unrelated photos with a nonsense tag: not learnable, nothing published.
    nonsense = autotag(s, "labels", "add", "--tag", "zork", *other_ids[::4][:5], "--json")
    assert nonsense.returncode == 0, nonsense.stderr
    outcome = json.loads(nonsense.stdout)["learn"]["outcomes"]
    assert [o["status"] for o in outcome] == ["not-yet"], outcome
    assert "cannot learn yet" in outcome[0]["message"], outcome
    assert active_bundle_id(s.models_dir) == restore_default
    assert _search(s, "zork") == set(other_ids[::4][:5])  # only the labels themselves

    t0 = time.monotonic()
    added = autotag(s, "labels", "add", "--tag", TAG, *flower_ids[:5], "--json")
    assert added.returncode == 0, added.stderr
    report = json.loads(added.stdout)["learn"]
    assert [o["status"] for o in report["outcomes"]] == ["learned"], report
    bundle_id = report["bundle_id"]
    assert bundle_id and active_bundle_id(s.models_dir) == bundle_id
    found = _search(s, TAG)
    took = time.monotonic() - t0
    assert took < 60, took
    rest = set(flower_ids[5:])
    # The other stored flowers are found from their stored vectors, the unrelated ones not.
    assert len(found & rest) >= 7, (len(found & rest), report)
    assert not found & set(other_ids), found & set(other_ids)

    listed = json.loads(autotag(s, "learned", "--json").stdout)
    mine = {r["tag"]: r for r in listed}
    assert mine[TAG]["status"] == "learned" and mine[TAG]["examples"]["positive"] == 5
    assert mine[TAG]["photos"] >= 12
    assert mine["zork"]["status"] == "not-yet"

    # A new upload of the same kind carries the tag from the running topology.
    time.sleep(6)  # the bolts look at models/ACTIVE every 5 s
    (new,) = intake.upload([str(flowers[15])], new_intake(s), force=True)
    info = wait_model(s, new.photo_id, bundle_id)
    assert TAG in dict(info.tags), info.tags
    assert info.kinds[TAG][0] == "learned"

    gone = autotag(s, "learned", "forget", TAG, "--json")
    assert gone.returncode == 0, gone.stderr
    assert _search(s, TAG) == set()
    with database.connect(s.services) as conn:
        assert learned_store.learned_tag_count(conn, TAG) == 0
        assert TAG not in learned_store.states(conn)
    assert active_bundle_id(s.models_dir) == json.loads(gone.stdout)["bundle_id"]


def test_removals_of_a_model_tag_recalibrate_it(autotagger: Settings, restore_default: str) -> None:
    """Removing a tag the model gives, by `autotag labels remove`, raises that class's
    threshold in a new bundle version: stored photos scoring no higher than the removed one
    lose the tag (search stops finding them), higher ones keep it, and the topology applies
    the new threshold to new uploads."""
    s = autotagger
    birds = _stamps("animals/birds")[:12]
    ids = _upload(s, birds, restore_default)
    with database.connect(s.services) as conn:
        infos = {pid: lookups.show(conn, pid) for pid in ids}
    by_tag: dict[str, list[tuple[float, str]]] = {}
    for pid, info in infos.items():
        assert info is not None
        for tag, score in info.tags:
            if info.kinds[tag][0] == "concept":
                by_tag.setdefault(tag, []).append((score, pid))
    tag, scored = max(by_tag.items(), key=lambda kv: len({s for s, _ in kv[1]}))
    scored = sorted(scored)
    assert len({sc for sc, _ in scored}) >= 3, by_tag  # three distinct scores at least
    (s1, low), (s2, wrong) = scored[0], scored[1]
    assert s1 < s2
    keep = {pid for sc, pid in scored if sc > s2}
    assert keep
    assert {low, wrong} | keep <= _search(s, tag)

    out = autotag(s, "labels", "remove", "--tag", tag, wrong, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["learn"]
    assert [o["status"] for o in report["outcomes"]] == ["recalibrated"], report
    bundle_id = report["bundle_id"]
    assert bundle_id and active_bundle_id(s.models_dir) == bundle_id
    found = _search(s, tag)
    assert low not in found and wrong not in found, (tag, s1, s2)
    assert keep <= found

    # The running topology tags with the recalibrated bundle: the low photo, tagged again,
    # no longer gets the tag.
    time.sleep(6)  # the bolts look at models/ACTIVE every 5 s
    birds_by_id = dict(zip(ids, birds, strict=True))
    (again,) = intake.upload([str(birds_by_id[low])], new_intake(s), force=True)
    info = wait_model(s, again.photo_id, bundle_id)
    assert tag not in dict(info.tags), info.tags
