"""The concept vocabulary, measured: what each of PhotoPrism's 257 label words finds in
``autotag search`` now, and the concept tags on the labelled real photos before and after.

The word table reads the active bundle (``autotag models init-default`` builds it from
``src/autotag/vision/concepts.tsv``). The labelled photos get one forward pass each through
the active bundle's ImageNet leaves; the concepts over those leaf probabilities come from
the vocabulary file (``--vocabulary``, default the source tree's, so an edited threshold is
measured without rebuilding a bundle) and, for "before", from an older one (``--before``:
e.g. ``git show 4bdf5c0:src/autotag/vision/concepts.tsv``, the 59 concepts).

Labels: the development photos (``concept_dev_labels.tsv``) and Tux Paint's photo stamps
were labelled with the words of the 59-concept vocabulary; the newer words' tags (given at
probability 0.3 or more) were judged one by one (``concept_tag_judgements.tsv``) and every
photo has a scene, the truth for indoor and outdoor (``concept_scene_labels.tsv``). A tag
nobody judged is counted apart as unjudged. Printed for the older vocabulary, the new one at
its own thresholds and at one global 0.55, and the per-concept thresholds the development
photos alone choose (``concept_evaluation.choose_concept_thresholds``).

    python bench/concept_vocabulary.py --before /tmp/old-concepts.tsv [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

PHOTOPRISM_NOTE = Path("/work/shared/notes/photoprism-vocabulary.md")
# PhotoPrism's 257 searchable label words (internal/ai/classify/rules.yml at 2883ef50).
PHOTOPRISM_WORDS = (
    "aircraft, airport, alligator, alpine, altar, animal, animal fur, ape, architecture, "
    "baboon, baby, backpack, badger, bag, bagel, bakery, balloon, banana, barbecue, barn, "
    "basket, beach, beacon, bear, bee, beetle, bench, beverage, bighorn, bike, bird, boat, "
    "boathouse, book, bookcase, bottle, bowl, bridge, bucket, buffalo, building, bus, "
    "butcher, butterfly, cab, camera, camper, camping, candle, cannon, car, cart, castle, "
    "cat, centipede, chair, chameleon, cheetah, chicken, church, cinema, cockroach, coffee, "
    "comic, computer, cooking, couch, cow, crab, cradle, crayfish, crocodile, cup, dessert, "
    "dining, display, diving, dock, document, dog, dome, dragonfly, drinks, duck, "
    "dung beetle, echidna, electronics, elephant, event, fan, farm, festival, field, fish, "
    "flag, flower, fly, food, fox, french loaf, frog, fruit, furniture, gallery, "
    "gas station, gazelle, glass, goose, grasshopper, greenhouse, hartebeest, helmet, "
    "heritage, hippo, historic, hog, horse cart, hummingbird, impala, indoor, info, insect, "
    "instrument, jeep, jellyfish, keyboard, kitchen, koala, lakeside, lampshade, landscape, "
    "lemur, leopard, limousine, lion, living, lizard, llama, lobster, mailbox, mask, meat, "
    "meerkat, memorial, microphone, moment, monitor, monkey, monument, mountain, music, "
    "nature, office, ostrich, otter, outdoor, owl, panda, park, parking, pasta, peacock, "
    "penguin, people, photography, pickup, pier, piggy bank, pineapple, pizza, plant, "
    "plate, portrait, pretzel, public transport, puma, pumpkin, puzzle, rabbit, "
    "radio telescope, refrigerator, reptile, rocks, runway, safe, salamander, sand, "
    "scooter, scorpion, screen, sea lion, seashore, shark, sheep, shell, shelter, ship, "
    "shoe, shop, sign, ski, skunk, snail, snow, snowmobile, soup, spider, spoon, stage, "
    "stained glass, stairs, starfish, store, street, streetcar, submarine, sunglasses, "
    "teapot, theater, theme park, throne, toaster, tool, tower, toy, tractor, traffic, "
    "train, tripod, truck, turtle, umbrella, valley, vase, vegetables, vehicle, viewpoint, "
    "wall, wallaby, warthog, water, weapon, weasel, website, whale, wild boar, wild cat, "
    "wildlife, window, wine, wing, wok, wolf, wombat, wood, worm, zebra"
).split(", ")
# Words that name no thing a photo shows (PhotoPrism's own categories of moments).
NOT_VISIBLE = {"event", "info", "moment", "living", "website", "heritage", "historic"}


def word_table(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """For each PhotoPrism word: the tags ``autotag search WORD`` reads it as, and how."""
    from autotag.storage.tag_search import TagQuery
    from autotag.vision.concepts import search_vocabulary

    vocab = search_vocabulary(manifest)
    concepts = {c["tag"].lower() for c in manifest.get("concepts") or []}
    known = [str(c).lower() for c in manifest["classes"]] + sorted(concepts)
    rows = []
    for word in PHOTOPRISM_WORDS:
        terms = TagQuery(text=word).terms(vocab, known)
        found = {tag: how for t in terms for tag, how in t.tags.items()}
        kind = (
            "concept"
            if found.keys() & concepts
            else "leaf"
            if found
            else "nothing (not visible)"
            if word in NOT_VISIBLE
            else "nothing"
        )
        rows.append(
            {
                "word": word,
                "finds": kind,
                "terms": len(terms),
                "tags": {t: h for t, h in sorted(found.items(), key=lambda x: (x[1], x[0]))},
            }
        )
    return rows


def _tags(probs: np.ndarray, names: list[str], thr: np.ndarray, detected) -> list[set[str]]:
    words = set(names)
    return [
        {n for n, p, t in zip(names, row, thr, strict=True) if p >= t} | (found & words)
        for row, found in zip(probs, detected, strict=True)
    ]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _summary(photos, tags: list[set[str]], known: set[str]) -> dict[str, Any]:
    """Tags judged by the labels (a word they know for every photo, ``known``, or one
    judged for that photo) are right or wrong; the others are counted apart as unjudged.
    Recall only where the labels give the whole truth: ``known`` words, indoor, outdoor."""
    from autotag.learning.concept_evaluation import SCENE_TAGS

    whole = known | set(SCENE_TAGS)
    per: dict[str, dict[str, int]] = {}
    judged = wrong = unjudged = both = hits = with_category = 0
    for photo, got in zip(photos, tags, strict=True):
        for word in got | (photo.must & whole):
            c = per.setdefault(word, {"tp": 0, "fp": 0, "fn": 0, "unjudged": 0})
            if word in got and word not in whole and word not in photo.judged:
                c["unjudged"] += 1
                unjudged += 1
            elif word in got and word in photo.right:
                c["tp"] += 1
                judged += 1
            elif word in got:
                c["fp"] += 1
                judged += 1
                wrong += 1
            else:
                c["fn"] += 1
        both += set(SCENE_TAGS) <= got
        if photo.category:
            with_category += 1
            hits += photo.category in got
    n = len(photos)
    total = sum(len(t) for t in tags)
    return {
        "photos": n,
        "tags_per_photo": round(total / n, 3) if n else None,
        "no_tag_share": _ratio(sum(not t for t in tags), n),
        "judged_tags": judged,
        "judged_wrong": wrong,
        "wrong_share": _ratio(wrong, judged),
        "unjudged_tags": unjudged,
        "strict_wrong_share": _ratio(wrong + unjudged, total),
        "category_word_share": _ratio(hits, with_category),
        "indoor_and_outdoor": both,
        "per_concept": {
            w: {
                **c,
                "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
                "recall": _ratio(c["tp"], c["tp"] + c["fn"]) if w in whole else None,
            }
            for w, c in sorted(per.items())
        },
    }


def labelled(before: Path | None, vocabulary: Path) -> dict[str, Any]:
    """Concept tags on the development photos and Tux Paint's photo stamps: the older
    vocabulary (``before``), ``vocabulary`` at its own thresholds, and the same at one global
    0.55; and the per-concept thresholds the development photos alone would choose."""
    from autotag.config import load_settings
    from autotag.learning import concept_evaluation as ce
    from autotag.pipeline.tag_step import load_tagger
    from autotag.vision.concepts import build_concepts, read_vocabulary
    from autotag.vision.decode import decode, network_view
    from autotag.vision.imagenet import imagenet_class_names, imagenet_synsets
    from autotag.vision.wordnet import WordNet

    s = load_settings()
    tagger = load_tagger(s.tagging, s.limits)
    bundle = tagger.bundle
    synsets = imagenet_synsets()
    if list(bundle.classes[: len(synsets)]) != imagenet_class_names():
        raise SystemExit(f"bundle {bundle.id} does not start with ImageNet's 1,000 classes")
    wordnet = WordNet.load()
    vocabs: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    if before is not None:
        concepts, M, thr = build_concepts(read_vocabulary(before), synsets, wordnet)
        vocabs["before"] = ([c.tag for c in concepts], M, thr)
    concepts, M, thr = build_concepts(read_vocabulary(vocabulary), synsets, wordnet)
    vocabs["after"] = ([c.tag for c in concepts], M, thr)
    vocabs["after_global"] = ([c.tag for c in concepts], M, np.full_like(thr, 0.55))
    out: dict[str, Any] = {"bundle": bundle.id, "vocabulary": str(vocabulary)}
    sets = (
        ("development", ce.dev_photos()),
        ("tuxpaint", ce.tuxpaint_photo_stamps()),
    )
    for name, photos in sets:
        leaf_p, detected = [], []
        for start in range(0, len(photos), 16):
            decoded = [
                decode(p.read_bytes(), ce._LIMITS, min_side=tagger.min_side)
                for p in photos[start : start + 16]
            ]
            P = bundle.score(tagger.features.extract([network_view(d) for d in decoded]))
            C = bundle.concept_scores(P)
            leaf_p.append(P[:, : len(synsets)])
            detected += [
                {t for t, _ in tagger.face_tags(d.bgr, r)} for d, r in zip(decoded, C, strict=True)
            ]
        P = np.concatenate(leaf_p)
        judged = ce.with_judgements(photos, name)
        known = {w for p in photos for w in p.right}  # the labels' own words
        if "before" in vocabs:
            known |= set(vocabs["before"][0])
        result: dict[str, Any] = {}
        for when, (names, M, thr) in vocabs.items():
            result[when] = _summary(judged, _tags(P @ M.T, names, thr, detected), known)
        if name == "development":
            names, M, thr = vocabs["after"]
            scores = ce.ConceptScores(names, thr, P @ M.T, detected)
            result["chosen_thresholds"] = ce.choose_concept_thresholds(judged, scores, known)
        out[name] = result
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="an older concepts.tsv to compare with")
    ap.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="the concepts.tsv to measure (default: the one in the source tree)",
    )
    ap.add_argument("--words-only", action="store_true", help="only the PhotoPrism table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from autotag.config import load_settings
    from autotag.vision import bundle as bundles

    s = load_settings()
    b = bundles.load_active(s.tagging.models_dir)
    manifest = b.manifest()
    rows = word_table(manifest)
    result: dict[str, Any] = {"words": rows}
    if not args.words_only:
        from autotag.vision.concepts import VOCABULARY_FILE

        result["labelled"] = labelled(args.before, args.vocabulary or VOCABULARY_FILE)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["finds"]] = counts.get(r["finds"], 0) + 1
    print(f"PhotoPrism's {len(rows)} words in bundle {b.id}: {counts}")
    print("| word | finds | tags (match) |\n|---|---|---|")
    for r in rows:
        tags = ", ".join(f"{t} ({h})" for t, h in list(r["tags"].items())[:6])
        more = f" … +{len(r['tags']) - 6}" if len(r["tags"]) > 6 else ""
        print(f"| {r['word']} | {r['finds']} | {tags}{more} |")
    for name, res in (result.get("labelled") or {}).items():
        if name in ("bundle", "vocabulary"):
            continue
        for when in ("before", "after_global", "after"):
            if when not in res:
                continue
            x = res[when]
            print(
                f"{name} {when}: {x['photos']} photos, tags/photo {x['tags_per_photo']}, "
                f"no tag {x['no_tag_share']}, judged tags {x['judged_tags']} wrong "
                f"{x['judged_wrong']} ({x['wrong_share']}), unjudged {x['unjudged_tags']}, "
                f"strict wrong share {x['strict_wrong_share']}, category word "
                f"{x['category_word_share']}, indoor+outdoor on one photo "
                f"{x['indoor_and_outdoor']}"
            )
        print(f"  {name} per concept, at the vocabulary's thresholds (at 0.55 in brackets):")
        print("    concept tp fp fn unjudged precision recall")
        glob = res["after_global"]["per_concept"]
        for w, c in res["after"]["per_concept"].items():
            g = glob.get(w, {"precision": None, "recall": None})
            print(
                f"    {w} {c['tp']} {c['fp']} {c['fn']} {c['unjudged']} {c['precision']} "
                f"({g['precision']}) {c['recall']} ({g['recall']})"
            )
        for w, c in (res.get("chosen_thresholds") or {}).items():
            print(
                f"  chosen on {name}: {w} threshold {c['threshold']} "
                f"(judged {c['judged']}, precision {c['precision']})"
            )


if __name__ == "__main__":
    main()
