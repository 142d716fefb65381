"""Concepts over ImageNet leaves: the WordNet reader, the vocabulary and the bundle's matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autotag.errors import ModelError
from autotag.vision.bundle import HeadGroup, ModelBundle
from autotag.vision.concepts import (
    build_concepts,
    irregular_plurals,
    leaf_words,
    read_vocabulary,
)
from autotag.vision.imagenet import imagenet_class_names, imagenet_synsets
from autotag.vision.wordnet import WordNet, parse_data_line

# Four lines in data.noun's format (offsets shortened to a made-up hierarchy).
DATA = """\
  1 This software and database is being provided ...
00000001 03 n 01 entity 0 000 | that which exists
00000002 05 n 02 animal 0 beast 0 001 @ 00000001 n 0000 | a living organism
00000003 05 n 02 dog 0 domestic_dog 0 002 @ 00000002 n 0000 ~ 00000004 n 0000 | a dog
00000004 05 n 01 German_shepherd 0 001 @ 00000003 n 0000 | a breed
00000005 05 n 01 Lassie 0 001 @i 00000003 n 0000 | a famous dog
"""


def _toy_wordnet(tmp_path: Path) -> WordNet:
    (tmp_path / "data.noun").write_text(DATA)
    (tmp_path / "noun.exc").write_text("mice mouse\ngeese goose\n")
    return WordNet.load(tmp_path)


def test_data_lines_parse_into_synsets() -> None:
    s = parse_data_line(DATA.splitlines()[3])
    assert s is not None
    assert (s.id, s.lemmas, s.hypernyms) == ("n00000003", ("dog", "domestic dog"), ("n00000002",))
    assert parse_data_line("  1 licence header") is None
    with pytest.raises(ModelError, match="malformed"):
        parse_data_line("00000009 05 n 02 broken")


def test_ancestors_follow_hypernyms_and_instances(tmp_path: Path) -> None:
    wn = _toy_wordnet(tmp_path)
    assert wn.ancestors("n00000004") == {"n00000004", "n00000003", "n00000002", "n00000001"}
    assert "n00000003" in wn.ancestors("n00000005")  # an instance hypernym (@i)
    assert wn.plurals_of("mouse") == ["mice"]
    assert irregular_plurals("field mouse", wn) == ["field mice"]
    with pytest.raises(ModelError, match="n09999999"):
        wn.ancestors("n09999999")


def test_vocabulary_file_is_reviewed_and_well_formed() -> None:
    specs = read_vocabulary()
    tags = {s.tag for s in specs}
    assert {"dog", "cat", "bird", "animal", "vehicle", "car", "food", "person"} <= tags
    assert not tags & {"placental", "canine", "artifact", "whole"}
    assert all(0 < s.threshold <= 1 for s in specs)


def test_vocabulary_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "v.tsv"
    bad.write_text("tag\tsynsets\twords\tthreshold\tnote\ndog\tdog.n.01\t\t0.5\t\n")
    with pytest.raises(ModelError, match="v.tsv:2"):
        read_vocabulary(bad)
    bad.write_text("tag\tsynsets\twords\tthreshold\tnote\ndog\tn02084071\t\t1.5\t\n")
    with pytest.raises(ModelError, match="outside"):
        read_vocabulary(bad)


@pytest.fixture(scope="module")
def real() -> tuple[WordNet, list[str], list[str]]:
    return WordNet.load(), imagenet_synsets(), imagenet_class_names()


def test_imagenet_leaves_roll_up_to_everyday_words(real) -> None:
    wn, synsets, classes = real
    concepts, M, thr = build_concepts(read_vocabulary(), synsets, wn)
    tag = {c.tag: i for i, c in enumerate(concepts)}

    def members(word: str) -> set[str]:
        return {classes[j] for j in np.flatnonzero(M[tag[word]])}

    assert M.shape == (len(concepts), 1000) and set(np.unique(M)) <= {0.0, 1.0}
    assert len(members("dog")) == 118 and {"German shepherd", "malamute"} <= members("dog")
    assert "timber wolf" not in members("dog") and "hotdog" not in members("dog")
    assert {"tabby", "tiger cat", "lion"} <= members("cat")
    assert members("dog") <= members("mammal") <= members("animal")
    assert "nematode" not in members("animal")  # reviewed out (see concepts.tsv)
    assert {"sports car", "cab", "jeep"} <= members("car") <= members("vehicle")
    assert {"bullet train", "steam locomotive"} <= members("vehicle")
    assert "espresso" in members("drink") and "espresso" not in members("food")
    assert "missile" not in members("weapon") and "menu" not in members("food")
    assert thr.shape == (len(concepts),)


def test_leaf_search_words_are_wordnet_synonyms(real) -> None:
    wn, synsets, classes = real
    words = leaf_words(classes, synsets, wn)
    assert "alsatian" in words["German shepherd"]
    assert "hot dog" in words["hotdog"]
    assert "german shepherd" not in words["German shepherd"]  # the name itself is not repeated


def _tiny_bundle(**extra) -> ModelBundle:
    return ModelBundle.create(
        name="t",
        feature_set={"name": "hog", "version": "1", "dim": 2},
        classes=["husky", "pug", "tabby", "spam"],
        heads=[HeadGroup("g", "softmax", 0, 3), HeadGroup("s", "sigmoid", 3, 4)],
        W=np.eye(4, 2, dtype=np.float32),
        b=np.zeros(4, np.float32),
        **extra,
    )


def _concepts(matrix: list[list[float]], thr: float = 0.5) -> dict:
    from autotag.vision.bundle import Concept

    names = ["dog", "animal"][: len(matrix)]
    return {
        "concepts": [
            Concept(n, ["n0"], [n], int(sum(r))) for n, r in zip(names, matrix, strict=True)
        ],
        "concept_matrix": np.array(matrix, np.float32),
        "concept_thresholds": np.full(len(matrix), thr, np.float32),
    }


def test_concepts_sum_leaves_and_name_the_leaf_that_counted_most(tmp_path: Path) -> None:
    b = _tiny_bundle(**_concepts([[1, 1, 0, 0], [1, 1, 1, 0]]))
    P = np.array([[0.45, 0.26, 0.29, 0.9]], np.float32)
    C = b.concept_scores(P)
    assert C[0] == pytest.approx([0.71, 1.0])
    assert b.concept_tags_for(P[0], C[0]) == [
        ("animal", pytest.approx(1.0), "husky"),
        ("dog", pytest.approx(0.71), "husky"),
    ]
    assert b.concept_tags_for(P[0], C[0], min_score=0.8) == [
        ("animal", pytest.approx(1.0), "husky")
    ]
    loaded = ModelBundle.load(b.save(tmp_path / "b"))
    assert [c.tag for c in loaded.concepts] == ["dog", "animal"]
    assert np.array_equal(loaded.concept_matrix, b.concept_matrix)
    with np.load(tmp_path / "b" / "weights.npz", allow_pickle=False) as npz:
        assert {"concept_matrix", "concept_thresholds"} <= set(npz.files)


def test_concepts_are_validated() -> None:
    with pytest.raises(ModelError, match="softmax"):
        _tiny_bundle(**_concepts([[1, 0, 0, 1]]))  # a sigmoid column
    with pytest.raises(ModelError, match="concept_matrix is"):
        _tiny_bundle(**{**_concepts([[1, 0, 0, 0]]), "concept_matrix": np.ones((1, 3))})
    clash = _concepts([[1, 0, 0, 0]])
    clash["concepts"][0].tag = "pug"
    with pytest.raises(ModelError, match="named like classes"):
        _tiny_bundle(**clash)


def test_merge_keeps_concepts_over_the_merged_columns() -> None:
    base = _tiny_bundle(**_concepts([[1, 1, 0, 0]]))
    other = ModelBundle.create(
        name="o",
        feature_set=base.feature_set,
        classes=["dog", "x"],
        heads=[HeadGroup("o", "sigmoid", 0, 2)],
        W=np.ones((2, 2), np.float32),
        b=np.zeros(2, np.float32),
    )
    merged = other.merge(base)
    assert merged.concepts == []  # the trained class "dog" replaces the concept
    kept = ModelBundle.create(
        name="o2",
        feature_set=base.feature_set,
        classes=["y"],
        heads=[HeadGroup("y", "sigmoid", 0, 1)],
        W=np.ones((1, 2), np.float32),
        b=np.zeros(1, np.float32),
    ).merge(base)
    assert [c.tag for c in kept.concepts] == ["dog"]
    assert kept.concept_matrix.tolist() == [[0, 1, 1, 0, 0]]


def test_bundle_surgery_keeps_the_concepts_of_the_kept_classes() -> None:
    """Training carries an old bundle's other head groups (sub_bundle) or drops replaced
    classes (drop_classes): concepts over the kept classes stay, the rest go."""
    from autotag.learning import bundle_edit

    base = _tiny_bundle(**_concepts([[1, 1, 0, 0], [0, 0, 1, 0]]))
    base.class_words = {"husky": ["huskies"], "spam": ["spams"]}
    sub = bundle_edit.sub_bundle(base, ["g"])
    assert [c.tag for c in sub.concepts] == ["dog", "animal"]
    assert sub.concept_matrix.tolist() == [[1, 1, 0], [0, 0, 1]]
    assert sub.class_words == {"husky": ["huskies"]}
    only_s = bundle_edit.sub_bundle(base, ["s"])
    assert only_s.concepts == [] and only_s.class_words == {"spam": ["spams"]}
    dropped = bundle_edit.drop_classes(base, {"tabby", "husky"})
    assert [c.tag for c in dropped.concepts] == ["dog"] and dropped.concepts[0].leaves == 1
    assert dropped.concept_matrix.tolist() == [[1, 0]]


def test_new_default_bundle_replaces_an_older_default_only(tmp_path: Path) -> None:
    """init-default activates the current default over an older one (then `autotag retag`
    moves the photos), but never over a bundle someone trained."""
    import dataclasses

    from autotag.config import load_settings
    from autotag.vision import bundle as bundles
    from autotag.vision.features import LITE2, onnx_model_path
    from autotag.vision.imagenet import build_default_bundle, default_bundle_id

    dirs = load_settings().model_dirs
    current = default_bundle_id()
    assert build_default_bundle(tmp_path, onnx_model_path(dirs)) == current
    v2 = bundles.load_active(tmp_path)
    dataclasses.replace(v2, id="imagenet-efficientnet-lite0-v2").install(tmp_path)
    dataclasses.replace(v2, id="my-trained-1").install(tmp_path)
    bundles.set_active(tmp_path, "imagenet-efficientnet-lite0-v2")
    build_default_bundle(tmp_path, onnx_model_path(dirs))
    assert bundles.active_bundle_id(tmp_path) == current
    bundles.set_active(tmp_path, "my-trained-1")
    build_default_bundle(tmp_path, onnx_model_path(dirs))
    assert bundles.active_bundle_id(tmp_path) == "my-trained-1"
    lite2 = build_default_bundle(tmp_path, onnx_model_path(dirs, LITE2), backbone=LITE2)
    assert lite2 == default_bundle_id(LITE2)
    assert bundles.active_bundle_id(tmp_path) == "my-trained-1"
    b2 = bundles.load_bundle(tmp_path, lite2)
    assert b2.feature_key == "cnn-lite2@1" and np.all(b2.concept_thresholds == np.float32(0.65))


def test_an_edited_vocabulary_is_a_new_default_bundle(tmp_path: Path) -> None:
    """A concept added to the vocabulary file makes a new bundle id, activated over the
    previous default: the bolts switch to it and the photos tagged before become backlog."""
    from autotag.config import load_settings
    from autotag.vision import bundle as bundles
    from autotag.vision.concepts import VOCABULARY_FILE
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    onnx = onnx_model_path(load_settings().model_dirs)
    vocabulary = tmp_path / "concepts.tsv"
    vocabulary.write_text(VOCABULARY_FILE.read_text())
    models = tmp_path / "models"
    before = build_default_bundle(models, onnx, vocabulary=vocabulary)
    with vocabulary.open("a") as f:
        f.write("hot drink\tn07920052\t\t0.55\ttest: a new concept (espresso)\n")
    after = build_default_bundle(models, onnx, vocabulary=vocabulary)
    assert after != before and bundles.active_bundle_id(models) == after
    assert "hot drink" in {c.tag for c in bundles.load_bundle(models, after).concepts}
    assert "hot drink" not in {c.tag for c in bundles.load_bundle(models, before).concepts}
    assert build_default_bundle(models, onnx, vocabulary=vocabulary) == after  # idempotent


def test_lite2_features_tag_the_coffee_photo() -> None:
    import skimage.data

    from autotag.config import load_settings
    from autotag.vision.feature_sets import FeatureOptions, get_feature_set

    fs = get_feature_set("cnn-lite2", FeatureOptions(load_settings().model_dirs, 1))
    rgb = skimage.data.coffee()
    emb, logits = fs.run([np.ascontiguousarray(rgb[:, :, ::-1])])
    assert emb.shape == (1, 1280) and fs.key == "cnn-lite2@1"
    assert imagenet_class_names()[int(np.argmax(logits[0]))] == "espresso"
