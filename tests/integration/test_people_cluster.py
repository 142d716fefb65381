"""People end to end on the real cluster: photos of three people (tests/data/faces) uploaded
and tagged by the topology (faces found and described in the autotag bolt, stored by the DB
writer); one face of each named with `autotag people name --face`; `autotag search NAME`
returns that person's other photos, group photos included, and not the others' photos; a
new photo of a named person uploaded afterwards carries the name within 10 s, tagged by the
topology (the bolt matched the face against the people it holds in memory)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.pipeline import intake
from autotag.storage import database, lookups
from tests.cli import autotag_json, new_intake, search_ids, wait_model

pytestmark = pytest.mark.cluster

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
PEOPLE = {
    "Ada Lovelace": ["img1.jpg", "img2.jpg", "img4.jpg", "couple.jpg", "selfie-many-people.jpg"],
    "Grace Hopper": ["img13.jpg", "img14.jpg"],
    "Alan Turing": ["img8.jpg", "img9.jpg"],
}
OTHERS = ["img16.jpg", "img20.jpg"]
LATER = {"Ada Lovelace": "img6.jpg", "Grace Hopper": "img15.jpg"}


def _upload(s: Settings, names: list[str]) -> dict[str, str]:
    recs = intake.upload([str(DATA / n) for n in names], new_intake(s), force=True)
    return {n: r.photo_id for n, r in zip(names, recs, strict=True)}


def test_name_once_and_the_stream_recognises(autotagger: Settings, default_bundle: str) -> None:
    s = autotagger
    first = [n for photos in PEOPLE.values() for n in photos] + OTHERS
    ids = _upload(s, first)
    for pid in ids.values():
        wait_model(s, pid, default_bundle)

    for name, photos in PEOPLE.items():
        shown = autotag_json(s, "show", ids[photos[0]])
        assert isinstance(shown, dict)
        faces = shown["faces"]
        assert faces, f"the topology stored no face for {photos[0]}"
        assert set(faces[0]) >= {"face_id", "person_id", "person", "box", "score"}
        face = max(faces, key=lambda f: f["box"][2] * f["box"][3])
        autotag_json(s, "people", "name", "--face", str(face["face_id"]), name)

    everyone = set(ids.values())
    for name, photos in PEOPLE.items():
        mine = {ids[p] for p in photos}
        found = search_ids(s, name)
        assert found == mine, (name, sorted(n for n, i in ids.items() if i in found))
        assert not found & (everyone - mine)

    # New photos of named people: the topology tags them with the name, within 10 s.
    for name, photo in LATER.items():
        t0 = time.monotonic()
        pid = _upload(s, [photo])[photo]
        info = None
        with database.connect(s.services) as conn:
            while time.monotonic() - t0 < 10:
                info = lookups.show(conn, pid)
                if info and info.status == "tagged" and name in dict(info.tags):
                    break
                time.sleep(0.2)
        took = time.monotonic() - t0
        assert info is not None and name in dict(info.tags), (name, info)
        assert info.kinds[name][0] == "person"
        assert took < 10, took
        assert pid in search_ids(s, name)
        assert pid not in set().union(*(search_ids(s, n) for n in PEOPLE if n != name))
