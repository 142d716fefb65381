"""The Tagger end to end on real photos (scikit-image samples)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from autotag.config import Settings, load_settings
from autotag.contract import Tag
from autotag.errors import ImageError, ModelError
from autotag.pipeline.tag_step import load_tagger
from autotag.vision import bundle as bundles
from autotag.vision.decode import DecodeLimits
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import feature_set_spec
from autotag.vision.tagger import Tagger
from tests.bundles import hog_bundle, with_default_bundle

CAT_TAGS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
COFFEE_TAGS = {"espresso", "cup", "coffee mug"}
LIMITS = DecodeLimits(max_file_bytes=8 << 20, max_pixels=64_000_000, max_dimension=20_000)
CUTOFFS = {"min_score": 0.05, "max_tags": 10}


def _jpeg(name: str) -> bytes:
    rgb = getattr(skimage.data, name)()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _bgr(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1])


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def settings_(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return with_default_bundle(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def options(settings_: Settings) -> FeatureOptions:
    return FeatureOptions(settings_.model_dirs, threads=1)


@pytest.fixture(scope="module")
def tagger(settings_: Settings, options: FeatureOptions) -> Tagger:
    return Tagger.load(settings_.models_dir, feature_options=options, limits=LIMITS, **CUTOFFS)


def _names(result) -> list[str]:
    """Leaf and detector tags, in order (concepts and properties come before and after)."""
    return [t.tag for t in result.tags if t.kind in ("leaf", "detector")]


def test_cat_photo(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("chelsea"))
    assert set(_names(r)[:3]) & CAT_TAGS, r.tags
    assert "person" not in _names(r)
    assert (r.width, r.height) == (451, 300)


def test_coffee_photo(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("coffee"))
    assert _names(r)[0] in COFFEE_TAGS, r.tags
    assert {t.tag: t.score for t in r.tags}[_names(r)[0]] > 0.5


def test_astronaut_is_a_person(tagger: Tagger) -> None:
    r = tagger.tag_bytes(_jpeg("astronaut"))
    assert {"person", "face"} <= set(_names(r)), r.tags
    assert {t.tag: t.score for t in r.tags}["person"] >= 0.85


def test_result_carries_the_contract_fields(tagger: Tagger, settings_: Settings) -> None:
    r = tagger.tag_bytes(_jpeg("coffee"))
    assert r.model_version == bundles.active_bundle_id(settings_.models_dir)
    assert r.feature_set == "cnn@1"
    assert r.vector.dtype == np.float32 and r.vector.shape == (1280,)
    assert abs(float(np.linalg.norm(r.vector)) - 1.0) < 1e-5
    assert all(isinstance(t.tag, str) and 0.0 <= t.score <= 1.0 for t in r.tags)
    kinds = [t.kind for t in r.tags]
    n = kinds.count("concept")
    assert n and kinds[:n] == ["concept"] * n and "concept" not in kinds[n:]  # concepts first
    for group in ({"concept"}, {"leaf", "detector"}):
        scores = [t.score for t in r.tags if t.kind in group]
        assert scores == sorted(scores, reverse=True)
        assert len(scores) <= CUTOFFS["max_tags"]
    assert r.tags_json()[0] == [r.tags[0].tag, r.tags[0].score, r.tags[0].kind, r.tags[0].via]


def test_batch_equals_single(tagger: Tagger) -> None:
    imgs = [_bgr("chelsea"), _bgr("coffee")]
    batch = tagger.tag_images(imgs)
    single = [tagger.tag_images([im])[0] for im in imgs]
    for a, b in zip(batch, single, strict=True):
        assert _names(a) == _names(b)
        assert np.allclose(a.vector, b.vector, atol=1e-5)
    assert tagger.tag_images([]) == []


def test_tag_file_and_bad_input(tagger: Tagger, tmp_path: Path) -> None:
    p = tmp_path / "coffee.jpg"
    p.write_bytes(_jpeg("coffee"))
    assert _names(tagger.tag_file(p))[0] in COFFEE_TAGS
    with pytest.raises(ImageError, match="not an image"):
        tagger.tag_bytes(b"<html><body>hi</body></html>")
    with pytest.raises(ImageError, match="empty file"):
        tagger.tag_bytes(b"")


def test_grey_and_tiny_images_tag(tagger: Tagger) -> None:
    grey = cv2.cvtColor(_bgr("coffee"), cv2.COLOR_BGR2GRAY)
    tiny = np.full((1, 1, 3), 128, np.uint8)
    for r in tagger.tag_images([grey, tiny]):
        assert r.vector.shape == (1280,)


def test_each_tagger_decodes_within_its_own_limits(
    tagger: Tagger, settings_: Settings, tmp_path: Path
) -> None:
    """A Tagger with a small max_pixels refuses what the default limits accept (it once
    decoded with the process-wide settings, whatever it had been built with)."""
    p = tmp_path / "wide.png"
    p.write_bytes(_png(200, 100))
    assert (tagger.tag_file(p).width, tagger.tag_bytes(p.read_bytes()).height) == (200, 100)
    small = Tagger(
        tagger.bundle,
        tagger.features,
        replace(LIMITS, max_pixels=10_000),
        **CUTOFFS,
        face=tagger.face,
    )
    with pytest.raises(ImageError, match="limit 0.0 Mpx"):
        small.tag_file(p)
    with pytest.raises(ImageError, match="limit 0.0 Mpx"):
        small.tag_bytes(p.read_bytes())
    # The same through settings, as the bolt builds its Tagger.
    env = {**os.environ, "AUTOTAG_MODELS_DIR": str(settings_.models_dir)}
    few = load_settings({**env, "AUTOTAG_MAX_PIXELS": "10000"})
    from_settings = load_tagger(few.tagging, few.limits)
    with pytest.raises(ImageError, match="limit 0.0 Mpx"):
        from_settings.tag_file(p)
    s = load_settings(env)
    assert load_tagger(s.tagging, s.limits).tag_file(p).width == 200


def test_load_names_a_bundle_or_takes_the_active_one(
    settings_: Settings, options: FeatureOptions
) -> None:
    active = bundles.active_bundle_id(settings_.models_dir)
    assert active is not None
    named = Tagger.load(
        settings_.models_dir, active, feature_options=options, limits=LIMITS, **CUTOFFS
    )
    assert named.model_version == active
    with pytest.raises(ModelError, match="no bundle 'nope-1'"):
        Tagger.load(
            settings_.models_dir, "nope-1", feature_options=options, limits=LIMITS, **CUTOFFS
        )


def test_hog_bundle_without_detectors(options: FeatureOptions) -> None:
    spec = feature_set_spec("hog")
    b = hog_bundle("hog-test-1", "hog-test", seed=0)
    t = Tagger(b, get_feature_set("hog", options), LIMITS, **CUTOFFS)
    assert t.face is None
    r = t.tag_images([_bgr("coffee")])[0]
    assert r.feature_set == "hog@1" and r.vector.shape == (spec["dim"],)
    assert sorted(_names(r)) == ["bright", "dark"]


def test_feature_set_mismatch_is_refused(settings_: Settings, options: FeatureOptions) -> None:
    b = bundles.load_active(settings_.models_dir)
    with pytest.raises(ModelError, match="was built for cnn@1"):
        Tagger(b, get_feature_set("hog", options), LIMITS, **CUTOFFS)
    b.detectors = ["unicorn"]
    with pytest.raises(ModelError, match="unknown detectors"):
        Tagger(b, get_feature_set("cnn", options), LIMITS, **CUTOFFS)


def test_no_active_bundle(tmp_path: Path, options: FeatureOptions) -> None:
    with pytest.raises(ModelError, match="init-default"):
        Tagger.load(tmp_path, feature_options=options, limits=LIMITS, **CUTOFFS)


# -- concepts, kinds and properties ------------------------------------------------------

LEAF_TAGS = Path(__file__).parent.parent / "data" / "leaf_tags_lite0.json"
SKIMAGE_DATA = Path(skimage.data.__file__).parent


def test_leaf_tags_are_unchanged_by_concepts(tagger: Tagger) -> None:
    """Today's leaf and detector tags of the 28 sample photos, recorded before concepts were
    added (tests/data/leaf_tags_lite0.json, same ONNX model and cut-offs), stay the same."""
    from autotag.learning.samples import package_photos

    recorded = json.loads(LEAF_TAGS.read_text())
    assert (recorded["min_score"], recorded["max_tags"]) == (
        CUTOFFS["min_score"],
        CUTOFFS["max_tags"],
    )
    photos = {p.name: p for p in package_photos()}
    assert set(recorded["photos"]) == set(photos)
    for name, expected in recorded["photos"].items():
        got = [t for t in tagger.tag_file(photos[name]).tags if t.kind in ("leaf", "detector")]
        assert [t.tag for t in got] == [t for t, _ in expected], name
        assert [t.score for t in got] == pytest.approx([s for _, s in expected], abs=2e-3), name
        assert all(t.kind == "detector" for t in got if t.tag in ("face", "person")), name


def _tags(r) -> dict[str, Tag]:
    return {t.tag: t for t in r.tags}


def test_sample_photos_get_everyday_words(tagger: Tagger) -> None:
    chelsea = _tags(tagger.tag_bytes(_jpeg("chelsea")))
    assert {"cat", "animal"} <= chelsea.keys(), chelsea
    assert chelsea["cat"].kind == "concept" and chelsea["cat"].via in CAT_TAGS
    assert "dog" not in chelsea and "vehicle" not in chelsea
    coffee = _tags(tagger.tag_bytes(_jpeg("coffee")))
    assert {"drink", "cup"} & coffee.keys(), coffee
    assert coffee["drink"].via == "espresso"
    for side in ("left", "right"):
        bike = _tags(tagger.tag_file(SKIMAGE_DATA / f"motorcycle_{side}.png"))
        assert {"vehicle", "motorcycle"} <= bike.keys() and "animal" not in bike, bike
    astronaut = _tags(tagger.tag_bytes(_jpeg("astronaut")))
    assert astronaut["person"].kind == "detector" and "animal" not in astronaut


def test_concepts_are_the_sums_of_their_leaves(tagger: Tagger) -> None:
    b = tagger.bundle
    P = b.score(tagger.features.extract([_bgr("chelsea")]))
    C = b.concept_scores(P)
    cat = [c.tag for c in b.concepts].index("cat")
    leaves = [b.classes.index(n) for n in ("tabby", "tiger cat", "Persian cat", "lion")]
    assert C[0, cat] >= P[0, leaves].sum() - 1e-6
    assert C[0, cat] <= 1.0 + 1e-5


def test_black_and_white_property_on_real_photos(tagger: Tagger) -> None:
    """Grey photos (stored grey, or grey pixels in colour files, after JPEG) get it; colour
    photos, and a colour photo with its saturation cut to a sepia tint, do not."""
    grey = ["camera", "moon", "coins", "page", "text", "brick", "grass", "gravel"]
    colour = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]
    colour += ["hubble_deep_field.jpg", "color.png", "retina.jpg"]

    def bw(img: np.ndarray) -> bool:
        return "black and white" in _tags(tagger.tag_images([img])[0])

    for name in grey:
        img = getattr(skimage.data, name)()
        rgb = np.dstack([img] * 3) if img.ndim == 2 else img
        ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]))
        assert bw(img) and bw(cv2.imdecode(jpg, cv2.IMREAD_COLOR)), name
    for name in colour:
        assert not bw(cv2.imread(str(SKIMAGE_DATA / name), cv2.IMREAD_COLOR)), name
    grey_coffee = cv2.cvtColor(cv2.cvtColor(_bgr("coffee"), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    sepia = np.clip(grey_coffee * np.array([0.75, 0.9, 1.1]), 0, 255).astype(np.uint8)
    assert bw(grey_coffee) and not bw(sepia)
    r = _tags(tagger.tag_images([grey_coffee])[0])["black and white"]
    assert r.kind == "property" and r.score >= 0.99


def test_a_cut_out_upload_is_tagged_from_its_visible_pixels(tagger: Tagger) -> None:
    """A cut-out (transparent around the object) is tagged as the classifier sees it through
    decode.network_view, keeps its own size, and a small cat in a wide transparent canvas is
    still a cat."""
    from autotag.vision.decode import decode, network_view

    cat = skimage.data.chelsea()  # RGB, 300 x 451
    h, w = cat.shape[:2]
    canvas = np.zeros((h + 200, 3 * w, 4), np.uint8)
    canvas[100 : 100 + h, w : 2 * w, :3] = cat
    canvas[100 : 100 + h, w : 2 * w, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(canvas, "RGBA").save(buf, "PNG")
    result = tagger.tag_bytes(buf.getvalue())
    assert (result.width, result.height) == (3 * w, h + 200)
    decoded = decode(buf.getvalue(), tagger.limits, min_side=tagger.min_side)
    assert decoded.cutout == (w, 100, 2 * w, 100 + h)
    direct = tagger.tag_images([network_view(decoded)], [decoded.bgr])[0]
    assert [(t.tag, t.kind) for t in result.tags] == [(t.tag, t.kind) for t in direct.tags]
    tags = _tags(result)
    assert {"cat", "animal"} <= tags.keys() and tags["cat"].via in CAT_TAGS, tags


def test_a_face_on_an_animal_photo_is_not_a_person(tagger: Tagger) -> None:
    """BlazeFace finds "faces" on monkeys, camels and chickens (GCompris's photos, from Debian's
    gcompris-qt-data); the tagger drops them there, and keeps the astronaut's and the
    cameraman's."""
    from autotag.learning.concept_evaluation import dev_photos
    from autotag.vision.decode import decode

    assert tagger.face is not None
    animals = {"macaque.webp", "camels.webp", "long_nosed_monkey.webp", "chicken.webp"}
    photos = [p for p in dev_photos() if p.name.rsplit("/", 1)[-1] in animals]
    assert len(photos) == len(animals)
    for p in photos:
        img = decode(p.read_bytes(), LIMITS).bgr
        assert tagger.face.tags(img), f"{p.name}: the detector alone no longer fires here"
        result = tagger.tag_images([img])[0]
        tags = _tags(result)
        assert "person" not in tags and "face" not in tags, p.name
        assert result.faces == [], f"{p.name}: its boxes (video tracks use them) must go too"
        assert tags["animal"].kind == "concept", p.name
    cameraman = cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR)
    for name, img in (("astronaut", _bgr("astronaut")), ("camera", cameraman)):
        result = tagger.tag_images([img])[0]
        tags = _tags(result)
        assert tags["person"].kind == "detector", name
        assert result.faces and result.faces[0][1] == pytest.approx(tags["face"].score, abs=1e-4)
