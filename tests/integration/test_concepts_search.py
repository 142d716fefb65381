"""On the real cluster: photos uploaded and tagged by the topology are found by everyday
words — ``autotag search dog`` finds the dogs (tagged with breeds), ``animal`` the dogs and
the cat, ``vehicle`` the trucks and the motorbike — and not the unrelated photos."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.learning.samples import TUXPAINT_STAMPS, package_photos
from autotag.pipeline import intake
from autotag.storage import database, lookups
from tests.cli import autotag, new_intake, wait_model
from tests.integration.test_pipeline import _wait_settled

pytestmark = pytest.mark.cluster

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
SAMPLES = {p.name: p for p in package_photos()}
PHOTOS = {
    "dogs": [OPENCV / "chicky_512.png", TUXPAINT_STAMPS / "animals/mammals/dogs/dog.png"],
    "cat": [SAMPLES["chelsea.png"]],
    "vehicles": [
        TUXPAINT_STAMPS / "vehicles/emergency/firetruck.png",
        TUXPAINT_STAMPS / "vehicles/garbagetruck.png",
        SAMPLES["motorcycle_left.png"],
    ],
    "unrelated": [SAMPLES["coffee.png"], SAMPLES["text.png"], SAMPLES["brick.png"]],
}


@pytest.fixture(scope="module")
def uploaded(autotagger: Settings) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    for group, paths in PHOTOS.items():
        records = intake.upload([str(p) for p in paths], new_intake(autotagger), force=True)
        ids[group] = {r.photo_id for r in records if r.photo_id}
        assert len(ids[group]) == len(paths), records
    status = _wait_settled(autotagger, [i for g in ids.values() for i in g], 300)
    assert set(status.values()) == {"tagged"}, status
    return ids


def _search(*words: str) -> list[dict]:
    """`autotag search WORDS --json`, as a user runs it."""
    autotag = Path(sys.executable).with_name("autotag")
    out = subprocess.run(
        [str(autotag), "search", *words, "--json", "--limit", "1000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def test_search_dog_finds_the_dogs_by_concept(uploaded: dict[str, set[str]]) -> None:
    hits = {h["photo_id"]: h for h in _search("dog")}
    assert uploaded["dogs"] <= hits.keys()
    assert not hits.keys() & (uploaded["cat"] | uploaded["vehicles"] | uploaded["unrelated"])
    for pid in uploaded["dogs"]:
        (why,) = hits[pid]["matches"]
        assert (why["tag"], why["kind"], why["match"]) == ("dog", "concept", "exact")
        assert why["via"]  # the breed that counted most
    assert uploaded["dogs"] <= {h["photo_id"] for h in _search("dogs")}


def test_search_animal_and_vehicle(uploaded: dict[str, set[str]]) -> None:
    animals = {h["photo_id"] for h in _search("animal")}
    assert uploaded["dogs"] | uploaded["cat"] <= animals
    assert not animals & (uploaded["vehicles"] | uploaded["unrelated"])
    vehicles = {h["photo_id"] for h in _search("vehicles")}
    assert uploaded["vehicles"] <= vehicles
    assert not vehicles & (uploaded["dogs"] | uploaded["cat"] | uploaded["unrelated"])
    trucks = {h["photo_id"]: h for h in _search("lorry")}  # a synonym
    assert trucks.keys() & uploaded["vehicles"]
    assert all(m["match"] == "synonym" for h in trucks.values() for m in h["matches"])


def test_stored_concepts_name_their_leaf(
    autotagger: Settings, uploaded: dict[str, set[str]]
) -> None:
    with database.connect(autotagger.services) as conn:
        for pid in uploaded["dogs"]:
            info = lookups.show(conn, pid)
            assert info is not None
            first, _ = info.tags[0]
            assert info.kinds[first][0] == "concept"  # concepts are listed first
            kind, via = info.kinds["dog"]
            assert kind == "concept" and via in dict(info.tags)


EQUINES = TUXPAINT_STAMPS / "animals/mammals/equines"
NOT_HORSES = [
    EQUINES / "zebra.png",
    EQUINES / "donkey.png",
    TUXPAINT_STAMPS / "animals/mammals/bovines/cow.png",
]


@pytest.fixture(scope="module")
def horse_uploads(autotagger: Settings, uploaded: dict[str, set[str]]) -> tuple[str, set[str]]:
    """Tux Paint's horse photo stamp and its nearest neighbours (a zebra, a donkey, a cow),
    tagged by the topology: (the horse's id, the others' ids)."""
    paths = [EQUINES / "horse.png", *NOT_HORSES]
    records = intake.upload([str(p) for p in paths], new_intake(autotagger), force=True)
    ids = [r.photo_id for r in records]
    assert all(ids) and len(set(ids)) == len(paths), records
    status = _wait_settled(autotagger, [i for i in ids if i], 300)
    assert set(status.values()) == {"tagged"}, status
    horse, *others = (i for i in ids if i)
    return horse, set(others) | {i for g in uploaded.values() for i in g}


@pytest.mark.parametrize("word", ["horse", "horses", "pony"])
def test_search_horse_finds_the_horse_and_no_other_animal(
    horse_uploads: tuple[str, set[str]], word: str
) -> None:
    """ImageNet's one horse class is 'sorrel': a user typing horse (or a plural, or a
    synonym) finds the horse photo by the horse concept, and not the zebra, the donkey, the
    cow, the dogs, the cat or the vehicles uploaded with it."""
    horse, others = horse_uploads
    hits = {h["photo_id"]: h for h in _search(word)}
    assert horse in hits, f"{word}: the horse stamp is not found"
    assert not hits.keys() & others, f"{word}: also finds {sorted(hits.keys() & others)}"
    assert any(m["tag"] == "horse" and m["kind"] == "concept" for m in hits[horse]["matches"])


def test_retag_moves_a_photo_to_the_new_vocabulary(
    autotagger: Settings, restore_default: str, tmp_path: Path
) -> None:
    """A real horse photo (GCompris's, a development photo) tagged by a default bundle built
    from a vocabulary without horse, as before issue 28, is not found by `horse`; once the
    current default is active again, `autotag retag` re-tags it and `horse` finds it."""
    from autotag.learning.concept_evaluation import dev_photos
    from autotag.vision.bundle import set_active
    from autotag.vision.concepts import VOCABULARY_FILE
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    (photo,) = [p for p in dev_photos() if p.name == "gcompris/erase/horse.webp"]
    path = tmp_path / "horse.webp"
    path.write_bytes(photo.read_bytes())
    old_vocabulary = tmp_path / "concepts.tsv"
    lines = VOCABULARY_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    old_vocabulary.write_text("".join(x for x in lines if not x.startswith("horse\t")))
    onnx = onnx_model_path(autotagger.model_dirs)
    older = build_default_bundle(autotagger.models_dir, onnx, vocabulary=old_vocabulary)
    assert older != restore_default
    time.sleep(6)  # the bolts look at models/ACTIVE every 5 s
    (rec,) = intake.upload([str(path)], new_intake(autotagger), force=True)
    assert rec.photo_id, rec
    wait_model(autotagger, rec.photo_id, older, timeout=300)
    assert rec.photo_id not in {h["photo_id"] for h in _search("horse")}

    set_active(autotagger.models_dir, restore_default)
    time.sleep(6)
    result = autotag(autotagger, "retag")
    assert result.returncode == 0, result.stderr
    info = wait_model(autotagger, rec.photo_id, restore_default, timeout=300)
    assert "horse" in dict(info.tags) and info.kinds["horse"][0] == "concept"
    assert rec.photo_id in {h["photo_id"] for h in _search("horse")}
