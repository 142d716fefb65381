"""People: clustering quality on labelled faces, and the cost of matching and clustering.

1. Clustering (``vision.face_identity.cluster``: DBSCAN, eps CLUSTER_DISTANCE, min_samples
   CLUSTER_MIN_FACES) of the biggest face of each of ../shared/data/faces' 64 photos, whose
   identities come from master.csv's "Yes" pairs (a photo in no "Yes" pair is a person of its
   own): purity (each cluster's majority person), completeness (sklearn), and how many faces
   stay unassigned (people with fewer than min_faces photos must stay unassigned).
2. Matching one face against 1,000 people × 30 reference faces: exhaustively
   (``nearest_person``) and with ``PeopleIndex`` (centroid bounds, then the nearest few
   people's references; the same decision), on people whose references spread as one
   person's descriptors do (~0.4 apart), probes near a person and strangers.
3. Clustering synthetic descriptors (n clustered, 10% noise), --sizes 10000,100000.

Timings are from whatever machine runs this (busy machine: re-measure idle).

    python bench/people.py [--data ../shared/data/faces] [--sizes 10000,100000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import homogeneity_completeness_v_measure

from autotag.vision.face_identity import (
    CLUSTER_DISTANCE,
    CLUSTER_MIN_FACES,
    MATCH_DISTANCE,
    FaceDescriber,
    cluster,
    nearest_person,
    squared_norms,
)
from autotag.vision.faces import FaceDetector
from autotag.vision.people_index import PeopleIndex

ROOT = Path(__file__).resolve().parents[1]


def identities(data: Path) -> dict[str, int]:
    pairs = list(csv.DictReader((data / "master.csv").open()))
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for p in pairs:
        find(p["file_x"])
        find(p["file_y"])
        if p["Decision"] == "Yes":
            parent[find(p["file_x"])] = find(p["file_y"])
    roots = sorted({find(x) for x in parent})
    return {x: roots.index(find(x)) for x in sorted(parent)}


def clustering_quality(data: Path, eps: float, min_faces: int) -> dict[str, object]:
    who = identities(data)
    det = FaceDetector.load([ROOT / "models"])
    desc = FaceDescriber.load()
    names, emb = [], []
    for n in who:
        img = cv2.imread(str(data / n), cv2.IMREAD_COLOR)
        found = det.detect_scored(img) if img is not None else []
        if not found:
            continue
        f = max((f for f, _ in found), key=lambda f: f.w * f.h)
        d = desc.describe(img, [(f.x, f.y, f.w, f.h)])[0]
        if d is not None:
            names.append(n)
            emb.append(d.embedding)
    labels = cluster(np.array(emb), max_distance=eps, min_faces=min_faces)
    truth = np.array([who[n] for n in names])
    grouped = labels >= 0
    purity_hits = 0
    for c in set(labels[grouped].tolist()):
        purity_hits += Counter(truth[labels == c].tolist()).most_common(1)[0][1]
    big = {p for p, k in Counter(truth.tolist()).items() if k >= min_faces}
    h, c, v = homogeneity_completeness_v_measure(truth[grouped], labels[grouped])
    return {
        "faces": len(names),
        "people": len(set(truth.tolist())),
        "people_with_min_faces": len(big),
        "clusters": len(set(labels[grouped].tolist())),
        "purity": round(purity_hits / max(1, grouped.sum()), 4),
        "homogeneity": round(float(h), 4),
        "completeness": round(float(c), 4),
        "unassigned": int((~grouped).sum()),
        "unassigned_of_people_with_min_faces": int(
            sum(1 for t, g in zip(truth, grouped, strict=True) if t in big and not g)
        ),
        "eps": eps,
        "min_faces": min_faces,
    }


def synthetic(n: int, rng: np.random.Generator) -> np.ndarray:
    people = max(1, n // 20)
    centres = rng.normal(0, 1, (people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres *= 1.0  # descriptors of different people sit ~1.4 apart
    own = centres[rng.integers(0, people, int(n * 0.9))]
    own += rng.normal(0, 0.025, own.shape).astype(np.float32)  # same person: ~0.4 apart
    noise = rng.normal(0, 1, (n - len(own), 128)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return np.concatenate([own, noise])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    out: dict[str, object] = {
        "clustering": clustering_quality(args.data, CLUSTER_DISTANCE, CLUSTER_MIN_FACES)
    }
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (1000, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owners = np.repeat(np.arange(1000), 30)
    refs = centres[owners] + rng.normal(0, 0.025, (30_000, 128)).astype(np.float32)
    probes = np.concatenate(
        [
            refs[rng.integers(0, len(refs), 150)] + rng.normal(0, 0.025, (150, 128)),
            rng.normal(0, 0.09, (50, 128)),  # strangers
        ]
    ).astype(np.float32)
    norms = squared_norms(refs)  # kept by the matcher with its references
    index = PeopleIndex(refs, owners)
    t0 = time.perf_counter()
    exhaustive = [nearest_person(p, refs, owners, norms=norms) for p in probes]
    out["match_ms_1000_people_x30"] = round((time.perf_counter() - t0) / len(probes) * 1000, 3)
    t0 = time.perf_counter()
    indexed = [index.nearest(p, MATCH_DISTANCE) for p in probes]
    out["match_ms_1000_people_x30_index"] = round(
        (time.perf_counter() - t0) / len(probes) * 1000, 3
    )
    out["match_same_decisions"] = sum(
        (a is None and b is None) or (a is not None and b is not None and a[0] == b[0])
        for a, b in zip(exhaustive, indexed, strict=True)
    )
    out["match_probes"] = len(probes)
    sizes = {}
    for n in (int(x) for x in args.sizes.split(",") if x):
        x = synthetic(n, rng)
        t0, c0 = time.perf_counter(), time.process_time()
        labels = cluster(x)
        sizes[n] = {
            "secs": round(time.perf_counter() - t0, 1),
            # CPU seconds of this process (all its threads): what it costs the machine, less
            # sensitive to the other engineers' load than the wall-clock seconds.
            "cpu_secs": round(time.process_time() - c0, 1),
            "clusters": len(set(labels.tolist()) - {-1}),
            "unassigned": int((labels < 0).sum()),
        }
    out["cluster_synthetic"] = sizes
    if args.json:
        print(json.dumps(out, indent=2))
        return
    q = out["clustering"]
    assert isinstance(q, dict)
    print(
        f"clustering (eps {q['eps']}, min_faces {q['min_faces']}) of {q['faces']} faces of "
        f"{q['people']} people ({q['people_with_min_faces']} with >= {q['min_faces']} photos): "
        f"{q['clusters']} clusters, purity {q['purity']:.2%}, homogeneity {q['homogeneity']}, "
        f"completeness {q['completeness']}, {q['unassigned']} unassigned "
        f"({q['unassigned_of_people_with_min_faces']} of people with enough photos)"
    )
    print(
        f"matching one face against 1,000 people x 30 faces: {out['match_ms_1000_people_x30']} ms"
        f" exhaustive, {out['match_ms_1000_people_x30_index']} ms with PeopleIndex (same "
        f"decision on {out['match_same_decisions']} of {out['match_probes']} probes; busy "
        "machine: re-measure idle)"
    )
    for n, r in sizes.items():
        print(
            f"clustering {n:,} synthetic descriptors: {r['secs']} s ({r['cpu_secs']} CPU s), "
            f"{r['clusters']} clusters, "
            f"{r['unassigned']} unassigned (busy machine: re-measure idle)"
        )


if __name__ == "__main__":
    main()
