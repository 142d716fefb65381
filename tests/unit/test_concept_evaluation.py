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


def test_per_concept_thresholds_use_judged_tags_only() -> None:
    """dog is known on every photo; pet only where judged (the unjudged 0.95 "pet" on photo
    x does not count); cat has too few judged tags to get a threshold of its own."""
    photos = [
        ce.LabeledPhoto(str(i), P, frozenset({"dog", "pet"}), judged=frozenset({"pet"}))
        for i in range(10)
    ]
    photos.append(ce.LabeledPhoto("w", P, frozenset(), judged=frozenset({"pet"})))
    photos.append(ce.LabeledPhoto("x", P, frozenset()))
    dog = [0.9] * 10 + [0.52, 0.47]  # wrong dogs at 0.52 and 0.47
    pet = [0.9] * 9 + [0.4, 0.85, 0.95]  # a wrong, judged pet at 0.85; x's is unjudged
    cat = [0.0] * 11 + [0.9]
    probs = np.array([dog, pet, cat], np.float32).T
    scores = ce.ConceptScores(["dog", "pet", "cat"], np.full(3, 0.55), probs, [set()] * 12)
    chosen = ce.choose_concept_thresholds(photos, scores, known={"dog", "cat"}, min_judged=10)
    assert chosen["dog"] == {"judged": 12, "threshold": 0.5, "precision": 0.9091}
    assert chosen["pet"]["judged"] == 11 and chosen["pet"]["threshold"] == 0.3
    assert chosen["pet"]["precision"] == pytest.approx(10 / 11, abs=1e-4)
    assert "cat" not in chosen


def test_judged_tags_and_scenes_extend_the_labels() -> None:
    """Every photo of both sets has a scene; judged-right tags become right, the scene a
    required word (so indoor and outdoor get a recall), judged-wrong tags stay wrong."""
    dev = {p.name: p for p in ce.with_judgements(ce.dev_photos(), "development")}
    coffee = dev["skimage/coffee.png"]
    assert {"coffee", "indoor"} <= coffee.right and "indoor" in coffee.must
    assert {"coffee", "indoor", "outdoor"} <= coffee.judged
    moon = dev["skimage/moon.png"]
    assert "worm" in moon.judged and "worm" not in moon.right  # the nematode leaf
    assert not moon.must & set(ce.SCENE_TAGS)
    stamps = ce.tuxpaint_photo_stamps()
    if stamps:
        tux = {p.name: p for p in ce.with_judgements(stamps, "tuxpaint")}
        horse = tux["animals/mammals/equines/horse.png"]
        assert "horse" in horse.right and not horse.right & set(ce.SCENE_TAGS)
