"""A typed word finds a longer leaf name only when the leaf is one (WordNet hypernyms): the
real ImageNet names and WordNet, through the same vocabulary and word matching every search
uses."""

from __future__ import annotations

import pytest

from autotag.storage.tag_search import TagQuery
from autotag.vision.concepts import leaf_is, search_vocabulary
from autotag.vision.imagenet import imagenet_class_names, imagenet_synsets
from autotag.vision.wordnet import WordNet

WRONG = {
    "fox": "fox squirrel",
    "snow": "snow leopard",
    "wood": "wood rabbit",
    "water": "irish water spaniel",
    "wolf": "wolf spider",
    "chicken": "prairie chicken",
    "worm": "worm fence",
    "horse": "horse cart",
}
RIGHT = {
    "retriever": "golden retriever",
    "retrievers": "golden retriever",
    "spaniel": "irish water spaniel",
    "fox": "red fox",
    "squirrel": "fox squirrel",
    "bus": "school bus",
    "shark": "tiger shark",
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    wn, synsets, classes = WordNet.load(), imagenet_synsets(), imagenet_class_names()
    return {"classes": classes, "class_is": leaf_is(classes, synsets, wn)}


def _found(manifest: dict, text: str) -> dict[str, str]:
    known = [c.lower() for c in manifest["classes"]]
    (term,) = TagQuery(text=text).terms(search_vocabulary(manifest), known)
    return term.tags


def test_words_do_not_find_leaves_that_are_not_what_they_say(manifest: dict) -> None:
    for word, leaf in WRONG.items():
        assert leaf not in _found(manifest, word), word


def test_words_still_find_the_leaves_that_are_them(manifest: dict) -> None:
    for word, leaf in RIGHT.items():
        assert _found(manifest, word).get(leaf) == "word", word


def test_tags_the_bundle_does_not_know_match_by_their_words(manifest: dict) -> None:
    known = ["fox squirrel", "snow day", "my fox"]  # "snow day", "my fox": taught tags
    (term,) = TagQuery(text="fox").terms(search_vocabulary(manifest), known)
    assert "my fox" in term.tags and "fox squirrel" not in term.tags
    (term,) = TagQuery(text="snow").terms(search_vocabulary(manifest), known)
    assert term.tags.get("snow day") == "word"
    # Without a bundle (no vocabulary), every word match stays as it was.
    (term,) = TagQuery(text="fox").terms(None, known)
    assert {"fox squirrel", "my fox"} <= term.tags.keys()


def test_leaf_is_lists_hypernym_phrases_inside_the_name(manifest: dict) -> None:
    li = manifest["class_is"]
    assert li["golden retriever"] == ["retriever"]
    assert li["irish water spaniel"] == ["spaniel", "water spaniel"]
    assert li["snow leopard"] == [] and li["prairie chicken"] == []
    assert "tabby" not in li  # one-word names have no inner words


def test_the_vocabulary_has_the_words_people_type(manifest: dict) -> None:
    from autotag.vision.concepts import build_concepts, read_vocabulary

    wn, synsets = WordNet.load(), imagenet_synsets()
    specs = read_vocabulary()
    assert len(specs) >= 250
    concepts, M, _ = build_concepts(specs, synsets, wn)
    classes = manifest["classes"]
    members = {c.tag: {classes[j] for j in M[i].nonzero()[0]} for i, c in enumerate(concepts)}
    assert members["horse"] == {"sorrel"} and "zebra" not in members["horse"]
    assert {"ox", "water buffalo"} <= members["cow"] and "ram" in members["sheep"]
    assert {"alp", "valley", "volcano", "cliff", "seashore", "lakeside"} <= members["landscape"]
    assert {"refrigerator", "stove", "wok"} <= members["kitchen"]
    assert {"seashore", "airliner", "church"} <= members["outdoor"]
    assert {"refrigerator", "studio couch"} <= members["indoor"]
    assert not members["indoor"] & members["outdoor"]
    assert "Granny Smith" in members["apple"] <= members["fruit"]
    # Search: each word reaches its concept, as typed and as a plural or synonym.
    from autotag.vision.concepts import search_words

    man = {
        **manifest,
        "concepts": [
            {"tag": c.tag, "words": search_words([c.tag, *s.words], wn)}
            for c, s in zip(concepts, specs, strict=True)
        ],
    }
    for word, tag in {
        "horse": "horse",
        "horses": "horse",
        "ponies": "horse",
        "cows": "cow",
        "sheep": "sheep",
        "outdoors": "outdoor",
        "indoor": "indoor",
    }.items():
        assert _found(man, word).get(tag) in {"exact", "plural", "synonym"}, word
