"""Reading a typed search: phrases, plurals, synonyms, several words."""

from __future__ import annotations

from autotag.storage.terms import Term, parse_query, singulars, tag_words, with_word_matches
from autotag.vision.concepts import search_vocabulary

VOCAB = {
    "dog": ["dog"],
    "hound": ["dog"],
    "car": ["car"],
    "automobile": ["car"],
    "bus": ["bus"],
    "golden retriever": ["golden retriever"],
    "mice": ["mouse"],
    "mouse": ["mouse"],
    "beach": ["beach"],
}


def test_singulars_follow_wordnet_suffix_rules() -> None:
    assert "dog" in singulars("dogs")
    assert "bus" in singulars("buses")
    assert "puppy" in singulars("puppies")
    assert "box" in singulars("boxes")
    assert singulars("glass") == [] and singulars("s") == []


def test_without_a_vocabulary_the_query_is_one_term() -> None:
    assert parse_query("  Hot   Dog ") == [Term("hot dog")]
    assert parse_query("   ") == []


def test_words_phrases_plurals_and_synonyms() -> None:
    assert parse_query("Dogs", VOCAB) == [Term("dogs", {"dog": "plural"})]
    assert parse_query("automobiles", VOCAB) == [Term("automobiles", {"car": "synonym"})]
    assert parse_query("buses", VOCAB) == [Term("buses", {"bus": "plural"})]
    assert parse_query("mice", VOCAB) == [Term("mice", {"mouse": "synonym"})]
    assert parse_query("dog beach", VOCAB) == [
        Term("dog", {"dog": "exact"}),
        Term("beach", {"beach": "exact"}),
    ]
    assert parse_query("golden retrievers on beach", VOCAB) == [
        Term("golden retrievers", {"golden retriever": "plural"}),
        Term("on"),
        Term("beach", {"beach": "exact"}),
    ]


def test_vocabulary_from_a_bundle_manifest() -> None:
    manifest = {
        "classes": ["German shepherd", "tabby"],
        "class_words": {"German shepherd": ["alsatian"]},
        "concepts": [{"tag": "dog", "words": ["dog", "hound"]}],
    }
    v = search_vocabulary(manifest)
    assert v["alsatian"] == ["German shepherd"] and v["german shepherd"] == ["German shepherd"]
    assert v["hound"] == ["dog"] and v["people"] == ["person"]
    assert v["monochrome"] == ["black and white"]
    assert search_vocabulary(None)["grayscale"] == ["black and white"]


def test_word_matches_name_the_known_tags_holding_every_word() -> None:
    assert tag_words("Golden Retriever, long-haired") == {"golden", "retriever", "long", "haired"}
    known = ["golden retriever", "Retriever", "flat-coated retriever", "dog", "golden hour"]
    (term,) = with_word_matches([Term("retriever", {"retriever": "exact"})], known)
    assert term.tags == {
        "retriever": "exact",  # already named: kept as it was
        "golden retriever": "word",
        "flat-coated retriever": "word",
    }
    (both,) = with_word_matches([Term("golden retriever")], known)
    assert both.tags == {}  # the text itself is not a word match of itself
    (none,) = with_word_matches([Term("-")], known)
    assert none.tags == {}
