"""Tagger: bundle + feature set + detectors → tags and a vector for each photo.

One Tagger is built per process (the daemonized autotag bolt holds one) because loading the
CNN and the bundle is the expensive part; tagging is then a batch of feature extraction,
one matrix product (and one more for the bundle's concepts), face detection
(``autotag.vision.faces``) and pixel properties (``autotag.vision.properties``).

Each tag says what it is (``Tag.kind``): a ``leaf`` class of the bundle, a ``concept`` over
leaves (with ``via``, the leaf that contributed most), a ``detector`` tag, a ``property``,
or a ``learned`` tag (a class of the bundle's learned head group, ``via`` the bundle).
Concepts come first, then leaves and detector tags exactly as before concepts existed
(best first, at most ``max_tags``), then properties.

Everything it needs arrives as values (decode limits, feature options, tag cut-offs), so
two Taggers with different limits in one process each keep their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotag.contract import FaceFound, Tag
from autotag.errors import ImageError, ModelError
from autotag.vision.bundle import ModelBundle, load_active, load_bundle
from autotag.vision.decode import (
    DecodedImage,
    DecodeLimits,
    decode,
    decode_file,
    network_view,
)
from autotag.vision.face_identity import MAX_FACES_KEPT, FaceDescriber
from autotag.vision.faces import Face, FaceDetector, face_tags, single_threaded_blas
from autotag.vision.feature_sets import FeatureOptions, get_feature_set
from autotag.vision.features import FeatureSet, as_bgr, l2_normalize
from autotag.vision.person_detector import PersonBox, PersonDetector
from autotag.vision.properties import property_tags
from autotag.vision.where_when import describe

# "monochrome" gives the black-and-white property tag.
KNOWN_DETECTORS = ("face", "monochrome")
# BlazeFace also finds the faces of cats, monkeys, cattle and birds: on a photo the
# classifier takes for an animal (its `animal` concept at ANIMAL_PHOTO or more), a face is
# taken for the animal's unless the detector is sure of it (SURE_FACE), so that `person`
# means a person. Chosen on the development photos (MODELS.md), not on Tux Paint.
ANIMAL_CONCEPT = "animal"
ANIMAL_PHOTO = 0.5
SURE_FACE = 0.9
# With the person detector (vision.person_detector, CenterNet), ``person`` comes from whole
# people, not from faces alone: a person box scoring PERSON_TAG or more, or a face of
# PERSON_FACE or more inside a person box of PERSON_BOX or more. A face is kept (the `face`
# tag, its descriptor) when it lies inside a person box of PERSON_BOX or more, or the face
# detector is sure of it (SURE_FACE): an animal's or a flower's "face" has no body around it.
# Chosen on bench/person_detection.py's labelled photos (MODELS.md).
PERSON_TAG = 0.5
PERSON_BOX = 0.25
PERSON_FACE = 0.7
FACE_IN_BOX = 0.6  # share of the face's area inside the person box


@dataclass
class TagResult:
    """What the autotag bolt emits for a photo (see the tuple contract)."""

    tags: list[Tag]
    vector: np.ndarray
    model_version: str
    feature_set: str
    width: int
    height: int
    # The faces behind the detector's tags (video tracks use their boxes), best first, each
    # with its descriptor when the Tagger has a describer and the face is big enough. Boxes
    # are in the photo's own pixels (``tag_decoded``; the given image's in ``tag_images``).
    faces: list[FaceFound] = field(default_factory=list)
    # The people the person detector found (in the same pixels as ``faces``), best first;
    # None without a person detector.
    people: list[PersonBox] | None = None
    # What the file itself says (``where_when.describe``): the contract's metadata fields.
    taken_local: str | None = None
    taken_at: str | None = None
    taken_source: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    place: str | None = None
    camera: str | None = None
    lens: str | None = None
    keywords: str | None = None
    title: str | None = None
    description: str | None = None

    @property
    def person_boxes(self) -> str | None:
        """The contract's ``person_boxes``: ``[[x, y, w, h, score], ...]`` as JSON text."""
        if self.people is None:
            return None
        return json.dumps([[*p.box, p.score] for p in self.people], separators=(",", ":"))

    def tags_json(self) -> list[list[object]]:
        return [[t.tag, float(t.score), t.kind, t.via] for t in self.tags]


class Tagger:
    """Holds a bundle, its feature set and its detectors; tags photos in batches."""

    def __init__(
        self,
        bundle: ModelBundle,
        feature_set: FeatureSet,
        limits: DecodeLimits,
        *,
        min_score: float,
        max_tags: int,
        face: FaceDetector | None = None,
        reduced_decode: bool = True,
        describer: FaceDescriber | None = None,
        person: PersonDetector | None = None,
    ) -> None:
        self.bundle = bundle
        # Whole people (boxes and the `person` tag); without it, `person` comes from faces.
        self.person = person if face is not None else None
        # Descriptors of the faces (vision.face_identity): only with a face detector.
        self.describer = describer if face is not None else None
        # JPEGs are decoded only as large as the feature set needs (0: always full size).
        self.min_side = feature_set.min_side if reduced_decode else 0
        self.features = feature_set
        self.limits = limits
        if (feature_set.name, feature_set.version, feature_set.dim) != (
            str(bundle.feature_set["name"]),
            str(bundle.feature_set["version"]),
            int(bundle.feature_set["dim"]),
        ):
            raise ModelError(
                f"bundle {bundle.id} was built for {bundle.feature_key} "
                f"(dim {bundle.feature_set['dim']}), this process has {feature_set.key} "
                f"(dim {feature_set.dim})"
            )
        unknown = [d for d in bundle.detectors if d not in KNOWN_DETECTORS]
        if unknown:
            raise ModelError(f"bundle {bundle.id} wants unknown detectors {unknown}")
        if "face" in bundle.detectors and face is None:
            raise ModelError(f"bundle {bundle.id} needs a face detector; none was given")
        self.face = face if "face" in bundle.detectors else None
        concepts = [c.tag for c in bundle.concepts]
        self.animal_concept = concepts.index(ANIMAL_CONCEPT) if ANIMAL_CONCEPT in concepts else None
        self.monochrome = "monochrome" in bundle.detectors
        self.learned = set(bundle.learned_classes())  # tags of kind "learned", via the bundle
        self.min_score = min_score
        self.max_tags = max_tags
        self.read_metadata = True  # dates, places, camera, keywords from the file itself

    @classmethod
    def load(
        cls,
        models_dir: str | Path,
        bundle_id: str | None = None,
        *,
        feature_options: FeatureOptions,
        limits: DecodeLimits,
        min_score: float,
        max_tags: int,
        reduced_decode: bool = True,
        face_min_px: int | None = None,
        person_detection: bool = True,
    ) -> Tagger:
        """Bundle ``bundle_id`` of ``models_dir`` (the active one by default) with the feature
        set and detectors it needs, loaded; with ``face_min_px``, faces at least that big get
        descriptors (``vision.face_identity``); without ``person_detection``, ``person`` comes
        from faces alone (cheaper, fewer people found)."""
        bundle = (
            load_active(models_dir) if bundle_id is None else load_bundle(models_dir, bundle_id)
        )
        features = get_feature_set(str(bundle.feature_set["name"]), feature_options)
        face = FaceDetector.load(feature_options.model_dirs) if "face" in bundle.detectors else None
        person = (
            PersonDetector.load(feature_options.model_dirs, min_score=PERSON_BOX)
            if face is not None and person_detection
            else None
        )
        return cls(
            bundle,
            features,
            limits,
            min_score=min_score,
            max_tags=max_tags,
            face=face,
            reduced_decode=reduced_decode,
            person=person,
            describer=(
                FaceDescriber.load(min_face_px=face_min_px)
                if face is not None and face_min_px is not None
                else None
            ),
        )

    @property
    def model_version(self) -> str:
        return self.bundle.id

    def _merge_tags(
        self, concepts: list[Tag], found: list[Tag], properties: list[Tag]
    ) -> list[Tag]:
        """Concepts, then leaf and detector tags (best first, ``max_tags`` of each), then
        properties; a name given twice (the ``person`` concept and detector) keeps its best."""
        best: dict[str, Tag] = {}
        for t in [*concepts, *found, *properties]:
            if t.tag not in best or t.score > best[t.tag].score:
                best[t.tag] = t

        def ranked(group: list[Tag]) -> list[Tag]:
            mine = {t.tag: best[t.tag] for t in group if best[t.tag] is t}
            order = sorted(mine.values(), key=lambda t: (-t.score, t.tag))
            return order[: self.max_tags]

        return ranked(concepts) + ranked(found) + ranked(properties)

    def tag_images(
        self,
        images: Sequence[np.ndarray],
        photos: Sequence[np.ndarray] | None = None,
        *,
        describe_faces: bool = True,
    ) -> list[TagResult]:
        """Tag decoded BGR images; features are extracted in one batch. ``photos``, when
        given, are the same photos as decoded, for the face detector and the properties
        (``images`` then being what the classifier sees of them: ``decode.network_view``)."""
        images = [as_bgr(im) for im in images]
        if not images:
            return []
        photos = images if photos is None else [as_bgr(im) for im in photos]
        with single_threaded_blas():
            return self._tag_images(images, photos, describe_faces)

    def kept_faces(
        self,
        img: np.ndarray,
        concept_probs: np.ndarray,
        people: list[PersonBox] | None = None,
    ) -> list[tuple[Face, float]]:
        """The face detector's scored faces on one photo (best first): with the person
        detector, those inside a person box (``people``) or sure; without it, unless they are
        probably the animal's the classifier sees; none without a face detector."""
        if self.face is None:
            return []
        found = self.face.detect_scored(img)
        if self.person is not None:
            boxes = people if people is not None else self.person.detect(img)
            return [(f, s) for f, s in found if s >= SURE_FACE or in_person(f, boxes)]
        if found and self.animal_concept is not None:
            animal = float(concept_probs[self.animal_concept])
            if animal >= ANIMAL_PHOTO and found[0][1] < SURE_FACE:
                return []
        return found

    def described(
        self, img: np.ndarray, faces: list[tuple[Face, float]], describe: bool = True
    ) -> list[FaceFound]:
        """The kept faces as the contract's FaceFound, with a descriptor for each face the
        describer takes (big enough, among the biggest ``max_faces``)."""
        faces = faces[:MAX_FACES_KEPT]  # a crowd of tiny faces is not a list of thousands
        boxes = [(f.x, f.y, f.w, f.h) for f, _ in faces]
        wanted = describe and self.describer is not None and faces
        described = self.describer.describe(img, boxes) if wanted and self.describer else []
        out = []
        for j, (box, (_, score)) in enumerate(zip(boxes, faces, strict=True)):
            d = described[j] if described else None
            if d is None:
                out.append(FaceFound(box, round(score, 4)))
            else:
                assert self.describer is not None
                out.append(
                    FaceFound(box, round(score, 4), d.quality, d.embedding, self.describer.version)
                )
        return out

    def face_tags(self, img: np.ndarray, concept_probs: np.ndarray) -> list[tuple[str, float]]:
        """The detector's tags for one photo: ``person`` and ``face`` (``detector_tags``)."""
        people = self.person.detect(img) if self.person is not None else []
        return self.detector_tags(self.kept_faces(img, concept_probs, people), people)

    def detector_tags(
        self, faces: list[tuple[Face, float]], people: list[PersonBox]
    ) -> list[tuple[str, float]]:
        """``face`` at the best kept face's score; ``person`` at the best person box's (at
        least PERSON_TAG) or kept face's (at least PERSON_FACE, inside a person box) score.
        Without the person detector: both from the faces, as before."""
        if self.person is None:
            return face_tags(faces)
        out: list[tuple[str, float]] = []
        person = [p.score for p in people if p.score >= PERSON_TAG]
        person += [s for f, s in faces if s >= PERSON_FACE and in_person(f, people)]
        person += [s for _, s in faces if s >= SURE_FACE]
        if person:
            out.append(("person", round(max(person), 4)))
        if faces:
            out.append(("face", round(max(s for _, s in faces), 4)))
        return out

    def _tag_images(
        self, images: list[np.ndarray], photos: list[np.ndarray], describe_faces: bool = True
    ) -> list[TagResult]:
        X = self.features.extract(images)
        probs = self.bundle.score(X)
        concept_probs = self.bundle.concept_scores(probs)
        vectors = l2_normalize(X)
        out = []
        for i, img in enumerate(photos):
            leaves = self.bundle.tags_for(probs[i], self.min_score, self.max_tags)
            people = self.person.detect(img) if self.person is not None else []
            faces = self.kept_faces(img, concept_probs[i], people)
            found_faces = self.described(img, faces, describe_faces)
            detected = self.detector_tags(faces, people)
            found = [
                Tag(t, s, "learned", self.bundle.id) if t in self.learned else Tag(t, s)
                for t, s in leaves
            ]
            found += [Tag(t, s, "detector") for t, s in detected]
            concepts = [
                Tag(t, s, "concept", via)
                for t, s, via in self.bundle.concept_tags_for(
                    probs[i], concept_probs[i], self.min_score, self.max_tags
                )
            ]
            if self.person is not None and not any(t == "person" for t, _ in detected):
                # The person detector decides who is a person: the classifier's `person`
                # concept (scuba diver, groom ...) alone is not enough.
                concepts = [c for c in concepts if c.tag != "person"]
            props = (
                [Tag(t, s, "property") for t, s in property_tags(img)] if self.monochrome else []
            )
            out.append(
                TagResult(
                    tags=self._merge_tags(concepts, found, props),
                    vector=vectors[i],
                    model_version=self.bundle.id,
                    feature_set=self.features.key,
                    width=int(img.shape[1]),
                    height=int(img.shape[0]),
                    faces=found_faces,
                    people=people if self.person is not None else None,
                )
            )
        return out

    def tag_decoded(
        self, decoded: DecodedImage, full: Callable[[], DecodedImage] | None = None
    ) -> TagResult:
        """Tag a decoded photo. Faces are described on the photo at full size: a photo
        decoded reduced is decoded again by ``full`` when it has a face big enough."""
        reduced = decoded.bgr.shape[1] != decoded.width
        result = self.tag_images(
            [network_view(decoded)], [decoded.bgr], describe_faces=not reduced
        )[0]
        result.width, result.height = decoded.width, decoded.height  # the photo's own size
        if result.people and decoded.bgr.shape[1] != decoded.width:
            k = decoded.width / decoded.bgr.shape[1]
            result.people = [
                PersonBox(
                    (
                        round(p.box[0] * k),
                        round(p.box[1] * k),
                        round(p.box[2] * k),
                        round(p.box[3] * k),
                    ),
                    p.score,
                )
                for p in result.people
            ]
        if result.faces and decoded.bgr.shape[1] != decoded.width:
            # A JPEG decoded reduced: boxes back to the photo's own pixels.
            k = decoded.width / decoded.bgr.shape[1]
            result.faces = [
                f._replace(box=tuple(round(v * k) for v in f.box)) for f in result.faces
            ]
            d = self.describer
            if (
                d is not None
                and full is not None
                and any(d.big_enough(f.box) for f in result.faces)
            ):
                try:
                    whole = full().bgr
                except ImageError:  # cannot be decoded whole: the faces keep their boxes only
                    return result
                scored = [(Face(*f.box, 1), f.score) for f in result.faces]
                result.faces = self.described(whole, scored)
        return result

    def tag_bytes(self, data: bytes) -> TagResult:
        """Decode (within this Tagger's limits) and tag; a bad image raises ImageError.
        The file's own metadata (date, place, camera, keywords) adds its fields and tags;
        malformed metadata costs only itself."""
        decoded = decode(data, self.limits, min_side=self.min_side)
        result = self.tag_decoded(decoded, lambda: decode(data, self.limits))
        if self.read_metadata:
            facts, tags = describe(data, decoded.format)
            for name, value in facts.items():
                setattr(result, name, value)
            result.tags = result.tags + [
                t for t in tags if t.tag not in {x.tag for x in result.tags}
            ]
        return result

    def tag_file(self, path: str | Path) -> TagResult:
        """tag_bytes() for a file; an oversized file is refused before it is read."""
        return self.tag_decoded(
            decode_file(path, self.limits, min_side=self.min_side),
            lambda: decode_file(path, self.limits),
        )


def in_person(face: Face, people: list[PersonBox]) -> bool:
    """Whether FACE_IN_BOX of the face's area lies inside one of the person boxes."""
    area = max(1, face.w * face.h)
    for p in people:
        x, y, w, h = p.box
        ix = max(0, min(face.x + face.w, x + w) - max(face.x, x))
        iy = max(0, min(face.y + face.h, y + h) - max(face.y, y))
        if ix * iy >= FACE_IN_BOX * area:
            return True
    return False


__all__ = ["TagResult", "Tagger"]
