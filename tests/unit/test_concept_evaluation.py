"""The concept evaluation's bookkeeping: categories, precision, recall, threshold choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotag.learning import concept_evaluation as ce

P = Path("x.png")


def test_folders_map_to_everyday_words_by_longest_prefix() -> None:
    assert ce.category_of("animals/mammals/dogs/dog.png")[:2] == ("dog", ("mammal", "animal"))
    assert ce.category_of("animals/mammals/bovines/cow.png")[0] == "mammal"
    assert ce.category_of("vehicles/flight/planes/747.png")[0] == "aircraft"
    assert ce.category_of("symbols/math/plus.png") is None


def test_photo_stamps_leave_out_cartoons_and_unmapped_folders() -> None:
    stamps = ce.tuxpaint_photo_stamps()
    if not stamps:
        pytest.skip("tuxpaint-stamps-default is not installed")
    names = [s.name for s in stamps]
    assert not [n for n in names if "cartoon" in n or n.startswith("symbols/")]
    dog = next(s for s in stamps if s.name == "animals/mammals/dogs/dog.png")
    assert dog.category == "dog" and dog.must == {"dog", "mammal", "animal"}


def test_report_counts_right_wrong_and_missed() -> None:
    photos = [
        ce.LabeledPhoto(
            "a", P, frozenset({"dog", "animal", "toy"}), "dog", frozenset({"dog", "animal"})
        ),
        ce.LabeledPhoto("b", P, frozenset({"cat", "animal"}), "cat"),
        ce.LabeledPhoto("c", P, frozenset()),
    ]
    r = ce.report(photos, [{"dog", "animal", "toy"}, {"dog"}, set()])
    assert (r["concept_tags"], r["wrong_tags"], r["category_word_share"]) == (4, 1, 0.5)
    assert r["per_concept"]["dog"] == {"tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0}
    assert r["per_concept"]["cat"]["recall"] == 0.0
    assert r["per_concept"]["toy"]["fn"] == 0  # may be right, not required
    assert r["no_concept_share"] == pytest.approx(1 / 3, abs=1e-4)


def test_threshold_is_the_lowest_reaching_the_target_precision() -> None:
    photos = [ce.LabeledPhoto(str(i), P, frozenset({"dog"})) for i in range(3)]
    photos.append(ce.LabeledPhoto("x", P, frozenset()))
    probs = np.array([[0.9], [0.7], [0.4], [0.6]], np.float32)  # the 4th is a wrong "dog"
    scores = ce.ConceptScores(["dog"], np.array([0.5]), probs, [set()] * 4)
    chosen, table = ce.choose_threshold(photos, scores, target=0.9, grid=(0.3, 0.5, 0.65, 0.8))
    assert chosen == 0.65
    assert [row["precision"] for row in table] == [0.75, pytest.approx(2 / 3, abs=1e-4), 1.0, 1.0]


def test_development_photos_read_gcompris_photos_from_its_resource_files() -> None:
    """GCompris's photos are read out of its .rcc files and decode as real photos; their
    labels come from folder and file names, with the 'also right' words kept apart."""
    from autotag.vision.decode import decode

    photos = ce.dev_photos()
    gcompris = [p for p in photos if p.member is not None]
    assert len(gcompris) == 141 and len(photos) == 207
    for p in gcompris:
        img = decode(p.read_bytes(), ce._LIMITS)
        assert img.format == "WEBP" and min(img.width, img.height) >= 100, p.name
    by_name = {p.name: p for p in gcompris}
    fish = by_name["gcompris/categorization/images/fishes/fish3.webp"]
    assert fish.must == {"fish", "animal"} and fish.right == {"fish", "animal", "food"}
    assert by_name["gcompris/categorization/images/tools/hammer2.webp"].must == {"tool"}
    assert by_name["gcompris/erase/kitten.webp"].must == {"cat", "mammal", "animal"}
