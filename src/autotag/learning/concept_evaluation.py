"""How good are a bundle's concept tags? Measured on real photos with hand-made labels.

Two labelled sets, kept apart:

- the *development* photos (``concept_dev_labels.tsv``: scikit-image, scikit-learn and
  opencv-doc samples, each labelled with every concept word right for it, and GCompris's
  photos labelled from their file and folder names), on which the
  one global concept threshold is chosen: the lowest that keeps concept tags at least
  ``TARGET_PRECISION`` precise;
- Tux Paint's *photo stamps* (Debian ``tuxpaint-stamps-default``; cartoons left out), the
  held-out evaluation nobody tunes on: each category folder maps to its everyday word
  (``animals/birds`` → bird) and the other words also right for it (animal).

The 253-concept vocabulary's newer words are judged tag by tag (``TAG_JUDGEMENTS``) and
every photo has a scene (``SCENE_LABELS``): ``with_judgements`` adds them, and
``choose_concept_thresholds`` picks a threshold per concept that has the evidence.

A concept tag is right when its word is in the photo's set, wrong otherwise. Reported per
concept (precision, recall) and overall: the share of photos whose category word is among
their tags, and the share of concept tags that are wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.learning.qt_resources import QtResources
from autotag.learning.samples import TUXPAINT_STAMPS
from autotag.vision.decode import DecodeLimits, decode, network_view
from autotag.vision.tagger import Tagger

DEV_LABELS = Path(__file__).with_name("concept_dev_labels.tsv")
# The 253-concept vocabulary's words the labels above do not use, judged tag by tag, and
# every photo's scene (the truth for indoor and outdoor): see the files' headers.
TAG_JUDGEMENTS = Path(__file__).with_name("concept_tag_judgements.tsv")
SCENE_LABELS = Path(__file__).with_name("concept_scene_labels.tsv")
SCENE_TAGS = ("indoor", "outdoor")
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
TARGET_PRECISION = 0.9
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(2, 20))
_LIMITS = DecodeLimits(max_file_bytes=64 << 20, max_pixels=64_000_000, max_dimension=20_000)

# Tux Paint folder (longest prefix wins) → (its everyday word, other words true of every
# photo in it, words that may be right for some of its photos). The first two are required.
TUXPAINT_CATEGORIES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "animals/amphibians": ("frog", ("animal",), ()),
    "animals/birds": ("bird", ("animal",), ()),
    "animals/fish": ("fish", ("animal",), ("crab",)),
    "animals/insects": ("insect", ("animal",), ("butterfly", "spider")),
    "animals/lizards": ("lizard", ("reptile", "animal"), ()),
    "animals/mammals": ("mammal", ("animal",), ()),
    "animals/mammals/apes": ("monkey", ("mammal", "animal"), ()),
    "animals/mammals/bears": ("bear", ("mammal", "animal"), ()),
    "animals/mammals/bears/toys": ("toy", (), ()),
    "animals/mammals/cats": ("cat", ("mammal", "animal"), ()),
    "animals/mammals/dogs": ("dog", ("mammal", "animal"), ()),
    "animals/marsupials": ("mammal", ("animal",), ()),
    "animals/shellfish": ("animal", (), ("crab", "food")),
    "clothes": ("clothing", (), ("hat", "shoe")),
    "clothes/hats": ("hat", ("clothing",), ()),
    "food": ("food", (), ()),
    "food/fruit": ("fruit", ("food",), ("plant",)),
    "food/nuts": ("food", (), ("fruit", "plant")),
    "food/spices": ("food", (), ("vegetable", "plant")),
    "food/vegetables": ("vegetable", ("food",), ("plant", "fungus", "fruit")),
    "hobbies/music": ("musical instrument", (), ()),
    "household/dishes": ("kitchenware", (), ("container", "bottle", "drink", "tool")),
    "household/tools": ("tool", (), ("container",)),
    "military/vehicles": ("vehicle", (), ("weapon", "aircraft", "car", "truck")),
    "people": ("person", (), ("clothing", "hat")),
    "plants": ("plant", (), ("flower", "vegetable", "food")),
    "plants/flowers": ("flower", ("plant",), ()),
    "plants/mushrooms": ("fungus", (), ("food", "vegetable", "plant")),
    "plants/trees": ("plant", (), ("fruit", "food")),
    "sports": ("sport", (), ("ball",)),
    "vehicles": ("vehicle", (), ("car", "truck")),
    "vehicles/auto": ("car", ("vehicle",), ("truck",)),
    "vehicles/cycle": ("bicycle", ("vehicle",), ("toy",)),
    "vehicles/emergency": ("vehicle", (), ("car", "truck")),
    "vehicles/flight": ("aircraft", ("vehicle",), ()),
    "vehicles/masstransit": ("bus", ("vehicle",), ()),
    "vehicles/race": ("car", ("vehicle",), ()),
    "vehicles/ship": ("boat", ("vehicle",), ()),
}


@dataclass(frozen=True)
class LabeledPhoto:
    """A photo, the concept words it must get (``required``; a miss counts against recall)
    and those that are right for it (``right``, a superset; any other tag is wrong).
    ``category`` is the one word the coverage share looks for."""

    name: str
    path: Path
    right: frozenset[str]
    category: str | None = None
    required: frozenset[str] | None = None  # None: every right word
    member: str | None = None  # a file inside the Qt resource bundle ``path``
    judged: frozenset[str] = frozenset()  # words judged one by one for it, right or wrong

    @property
    def must(self) -> frozenset[str]:
        return self.right if self.required is None else self.required

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        return QtResources(self.path).read(self.member)


def _sample_dirs() -> dict[str, Path]:
    import skimage
    import sklearn

    return {
        "skimage": Path(skimage.__file__).parent / "data",
        "sklearn": Path(sklearn.__file__).parent / "datasets" / "images",
        "opencv": Path("/usr/share/doc/opencv-doc/examples/data"),
        "gcompris": GCOMPRIS_RCC,
    }


def _words(cell: str) -> frozenset[str]:
    return frozenset(w.strip() for w in cell.split(",") if w.strip())


def dev_photos(labels: Path = DEV_LABELS) -> list[LabeledPhoto]:
    """The development photos of ``labels``; a missing photo is an error naming its package."""
    dirs = _sample_dirs()
    out = []
    for line in labels.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(("#", "source\t")):
            continue
        source, name, *rest = line.split("\t")
        words = _words(rest[0] if rest else "")
        also = _words(rest[1] if len(rest) > 1 else "")
        member = None
        if source == "gcompris":  # activity/path → the activity's .rcc and its member
            activity, _, inner = name.partition("/")
            path = dirs[source] / f"{activity}.rcc"
            member = f"gcompris/src/activities/{activity}/resource/{inner}"
        else:
            path = dirs[source] / name
        if not path.is_file():
            raise AutotagError(f"development photo {path} is missing (install {source} samples)")
        out.append(LabeledPhoto(f"{source}/{name}", path, words | also, None, words, member))
    return out


def category_of(rel: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """The (word, implied, may-be-right) words of a stamp's folder: its longest mapped prefix."""
    parts = rel.split("/")[:-1]
    for n in range(len(parts), 0, -1):
        hit = TUXPAINT_CATEGORIES.get("/".join(parts[:n]))
        if hit:
            return hit
    return None


def tuxpaint_photo_stamps(root: Path = TUXPAINT_STAMPS) -> list[LabeledPhoto]:
    """Tux Paint's photo stamps in mapped categories (no cartoons, mirrors or flips)."""
    if not root.is_dir():
        raise AutotagError(
            f"Tux Paint stamps not found at {root} (apt install tuxpaint-stamps-default)"
        )
    out = []
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root).as_posix()
        if "cartoon" in rel.split("/") or p.name.endswith(("_mirror.png", "_flip.png")):
            continue
        cat = category_of(rel)
        if cat is not None:
            word, implied, maybe = cat
            required = frozenset((word, *implied))
            out.append(LabeledPhoto(rel, p, required | frozenset(maybe), word, required))
    return out


def _label_rows(path: Path, columns: int) -> list[list[str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(("#", "set\t")):
            continue
        cells = line.split("\t")
        if len(cells) != columns:
            raise AutotagError(f"{path.name}:{n}: expected {columns} tab-separated cells")
        rows.append(cells)
    return rows


def with_judgements(
    photos: Sequence[LabeledPhoto],
    set_name: str,
    judgements: Path = TAG_JUDGEMENTS,
    scenes: Path = SCENE_LABELS,
) -> list[LabeledPhoto]:
    """The photos of ``set_name`` ("development" or "tuxpaint") with the tags judged right
    added to ``right`` and their scene (indoor/outdoor) to ``right`` and ``required``, so
    that indoor and outdoor get a recall; ``judged`` lists every word judged for a photo, so
    that a new-vocabulary tag nobody judged can be told from a wrong one. Every photo must
    have a scene: a set that grew needs its new photos looked at."""
    yes: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    for s, photo, tag, right in _label_rows(judgements, 4):
        if s == set_name:
            if right not in ("yes", "no"):
                raise AutotagError(f"{judgements.name}: {photo} {tag}: right must be yes or no")
            seen.setdefault(photo, set()).add(tag)
            if right == "yes":
                yes.setdefault(photo, set()).add(tag)
    scene = {p: sc for s, p, sc in _label_rows(scenes, 3) if s == set_name}
    missing = [p.name for p in photos if p.name not in scene]
    if missing:
        raise AutotagError(f"{scenes.name}: no scene for {len(missing)} photos ({missing[:3]})")
    out = []
    for p in photos:
        where = frozenset({scene[p.name]} & set(SCENE_TAGS))
        out.append(
            replace(
                p,
                right=p.right | frozenset(yes.get(p.name, ())) | where,
                required=p.must | where,
                judged=frozenset(seen.get(p.name, ())) | frozenset(SCENE_TAGS),
            )
        )
    return out


@dataclass
class ConceptScores:
    """Every photo's concept probabilities (unthresholded) and its detector tags."""

    concepts: list[str]
    thresholds: np.ndarray
    probs: np.ndarray  # (photos, concepts)
    detected: list[set[str]]

    def tags(self, threshold: float | None = None, detectors: bool = True) -> list[set[str]]:
        """Concept tags per photo at the bundle's thresholds (or one global ``threshold``),
        plus (unless ``detectors=False``) detector tags that are concept words (person)."""
        thr = self.thresholds if threshold is None else np.full(len(self.concepts), threshold)
        words = set(self.concepts) if detectors else set()
        return [
            {c for c, p, t in zip(self.concepts, row, thr, strict=True) if p >= t} | (found & words)
            for row, found in zip(self.probs, self.detected, strict=True)
        ]


def concept_scores(
    tagger: Tagger,
    photos: Sequence[LabeledPhoto],
    batch: int = 16,
    progress: Callable[[int], None] | None = None,
) -> ConceptScores:
    """Run the tagger's features, bundle and detectors over the photos (decoded as uploads)."""
    bundle = tagger.bundle
    if not bundle.concepts:
        raise AutotagError(f"bundle {bundle.id} has no concepts")
    probs, detected = [], []
    for start in range(0, len(photos), batch):
        decoded = [
            decode(p.read_bytes(), _LIMITS, min_side=tagger.min_side)
            for p in photos[start : start + batch]
        ]
        P = bundle.score(tagger.features.extract([network_view(d) for d in decoded]))
        C = bundle.concept_scores(P)
        probs.append(C)
        for d, row in zip(decoded, C, strict=True):
            detected.append({t for t, _ in tagger.face_tags(d.bgr, row)})
        if progress:
            progress(len(decoded))
    return ConceptScores(
        [c.tag for c in bundle.concepts],
        np.asarray(bundle.concept_thresholds, np.float32),
        np.concatenate(probs),
        detected,
    )


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def report(photos: Sequence[LabeledPhoto], tags: Sequence[set[str]]) -> dict[str, Any]:
    """Per-concept precision and recall, wrong-tag share, and category-word coverage."""
    per: dict[str, dict[str, int]] = {}
    wrong = total = hits = with_category = none = 0
    for photo, got in zip(photos, tags, strict=True):
        for word in got | photo.must:
            c = per.setdefault(word, {"tp": 0, "fp": 0, "fn": 0})
            if word in got and word in photo.right:
                c["tp"] += 1
            elif word in got:
                c["fp"] += 1
            else:
                c["fn"] += 1  # a required word missed
        total += len(got)
        wrong += len(got - photo.right)
        none += not got
        if photo.category:
            with_category += 1
            hits += photo.category in got
    return {
        "photos": len(photos),
        "concept_tags": total,
        "wrong_tags": wrong,
        "wrong_share": _ratio(wrong, total),
        "precision": _ratio(total - wrong, total),
        "category_word_share": _ratio(hits, with_category),
        "no_concept_share": _ratio(none, len(photos)),
        "per_concept": {
            w: {
                **c,
                "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
                "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
            }
            for w, c in sorted(per.items())
        },
    }


def choose_threshold(
    photos: Sequence[LabeledPhoto],
    scores: ConceptScores,
    target: float = TARGET_PRECISION,
    grid: Sequence[float] = THRESHOLD_GRID,
) -> tuple[float | None, list[dict[str, Any]]]:
    """The lowest global threshold whose concept tags reach ``target`` precision on
    ``photos`` (None if none does), and the table it was chosen from. Detector tags are
    left out: the threshold does not govern them."""
    table = []
    for t in grid:
        r = report(photos, scores.tags(t, detectors=False))
        tp = r["concept_tags"] - r["wrong_tags"]
        right = sum(len(p.must) for p in photos)
        table.append(
            {
                "threshold": t,
                "precision": r["precision"],
                "recall": _ratio(tp, right),  # right tags / required words (dev: the same)
                "concept_tags": r["concept_tags"],
                "wrong_tags": r["wrong_tags"],
            }
        )
    ok = [row["threshold"] for row in table if (row["precision"] or 0.0) >= target]
    return (min(ok) if ok else None), table


JUDGED_FLOOR = 0.3  # the new-vocabulary tags were judged down to this probability
CONCEPT_GRID = tuple(round(0.05 * i, 2) for i in range(6, 20))  # 0.3 … 0.95
MIN_JUDGED = 10


def choose_concept_thresholds(
    photos: Sequence[LabeledPhoto],
    scores: ConceptScores,
    known: set[str],
    target: float = TARGET_PRECISION,
    min_judged: int = MIN_JUDGED,
    grid: Sequence[float] = CONCEPT_GRID,
) -> dict[str, dict[str, Any]]:
    """Per concept with at least ``min_judged`` judged tags at the grid's lowest value: the
    lowest grid threshold whose judged tags on ``photos`` reach ``target`` precision
    (``None`` if none does). A tag is judged when its word is one the labels know for every
    photo (``known``) or was judged for that photo (``LabeledPhoto.judged``); unjudged tags
    are left out, so a concept is tuned only on evidence."""
    out: dict[str, dict[str, Any]] = {}
    for c, word in enumerate(scores.concepts):
        rows = [
            (float(scores.probs[i, c]), word in p.right)
            for i, p in enumerate(photos)
            if (word in known or word in p.judged) and scores.probs[i, c] >= grid[0]
        ]
        if len(rows) < min_judged:
            continue
        p = np.array([r[0] for r in rows])
        right = np.array([r[1] for r in rows])
        chosen, precision = None, None
        for t in grid:
            sel = p >= t
            if sel.any() and right[sel].mean() >= target:
                chosen, precision = t, round(float(right[sel].mean()), 4)
                break
        out[word] = {"judged": len(rows), "threshold": chosen, "precision": precision}
    return out
