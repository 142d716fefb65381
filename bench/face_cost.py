"""What faces cost a photo: the autotag bolt's own tagging (``Tagger.tag_bytes``, one thread)
on photos with no face, one face and several, with face recognition on and off.

Photos (JPEG, as uploaded, resized to --long-side): no face = scikit-image's coffee, rocket
and chelsea (a cat); one face = ../shared/data/faces img1/img2/img4 (one person each);
several = couple.jpg, selfie-many-people.jpg and five one-face photos in a grid. Each photo is tagged once to warm up, then
--repeat times; the median per photo is reported, with the faces found and described.
The person detector stays as configured (on by default).

Run on an idle machine only (no tests, helpers or other benchmarks); the load average is
printed before and after.

    virtualenvs/autotag/bin/python bench/face_cost.py [--long-side 1600] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from autotag.config import load_settings
from autotag.pipeline.tag_step import load_tagger
from autotag.vision.tagger import Tagger

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"


def jpeg(img_bgr: np.ndarray, long_side: int) -> bytes:
    h, w = img_bgr.shape[:2]
    scale = long_side / max(h, w)
    if scale < 1:
        img_bgr = cv2.resize(img_bgr, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def photos(long_side: int) -> dict[str, list[tuple[str, bytes]]]:
    def sample(name: str) -> np.ndarray:
        return cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)

    def shared(name: str) -> np.ndarray:
        img = cv2.imread(str(FACES / name), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    def collage(names: tuple[str, ...]) -> np.ndarray:
        """Several one-face photos side by side: a group photo whose faces are all big."""
        tiles = [cv2.resize(shared(n), (400, 480), interpolation=cv2.INTER_AREA) for n in names]
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 3)
        return np.vstack([np.hstack(tiles[i : i + 3]) for i in range(0, len(tiles), 3)])

    five = ("img1.jpg", "img2.jpg", "img4.jpg", "img6.jpg", "img8.jpg")
    return {
        "no face": [(n, jpeg(sample(n), long_side)) for n in ("coffee", "rocket", "chelsea")],
        "one face": [(n, jpeg(shared(n), long_side)) for n in ("img1.jpg", "img2.jpg", "img4.jpg")],
        "several": [
            (n, jpeg(shared(n), long_side)) for n in ("couple.jpg", "selfie-many-people.jpg")
        ]
        + [("five one-face photos", jpeg(collage(five), long_side))],
    }


def per_photo_ms(tagger: Tagger, data: bytes, repeat: int) -> tuple[float, int, int]:
    result = tagger.tag_bytes(data)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        tagger.tag_bytes(data)
        times.append(time.perf_counter() - t0)
    described = sum(1 for f in result.faces if f.embedding is not None)
    return statistics.median(times) * 1000, len(result.faces), described


def stages_ms(tagger: Tagger, data: bytes, repeat: int) -> dict[str, float]:
    """Per face, median ms of each stage the bolt runs: detection (BlazeFace, per photo),
    landmarks (dlib's 5-point shape predictor), the aligned chip and the descriptor
    (dlib's ResNet); the person detector (CenterNet, per photo) beside them."""
    import dlib

    from autotag.vision.decode import decode

    assert tagger.face is not None and tagger.describer is not None
    img = decode(data, tagger.limits).bgr
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    d = tagger.describer
    times: dict[str, list[float]] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(1000 * (time.perf_counter() - t0))
        return out

    for _ in range(repeat):
        faces = timed("detection (per photo)", lambda: tagger.face.detect_scored(img))
        if tagger.person is not None:
            timed("person detector (per photo)", lambda: tagger.person.detect(img))
        for face, _score in faces[:1]:
            rect = dlib.rectangle(max(0, face.x), max(0, face.y), face.x + face.w, face.y + face.h)
            shape = timed("landmarks (per face)", partial(d._shape, rgb, rect))
            chip = timed(
                "aligned chip (per face)",
                partial(dlib.get_face_chip, rgb, shape, size=150, padding=0.25),
            )
            timed("descriptor (per face)", partial(d._net.compute_face_descriptor, chip))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long-side", type=int, default=1600)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    s = load_settings()
    taggers = {
        "faces on": load_tagger(s.override(face_recognition=True).tagging, s.limits),
        "faces off": load_tagger(s.override(face_recognition=False).tagging, s.limits),
    }
    print(
        f"photos at {args.long_side} px long side; person detector "
        f"{'on' if s.tagging.person_detection else 'off'}; median of {args.repeat}, one thread"
    )
    print(
        f"{'photos':<10} {'photo':<24} {'faces':>5} {'descr.':>6} "
        f"{'on ms':>8} {'off ms':>8} {'faces cost':>10}"
    )
    for group, items in photos(args.long_side).items():
        extra = []
        for name, data in items:
            on, found, described = per_photo_ms(taggers["faces on"], data, args.repeat)
            off, _, _ = per_photo_ms(taggers["faces off"], data, args.repeat)
            extra.append(on - off)
            print(
                f"{group:<10} {name:<24} {found:>5} {described:>6} "
                f"{on:8.1f} {off:8.1f} {on - off:+10.1f}"
            )
        print(
            f"{group:<10} {'(mean)':<24} {'':>5} {'':>6} {'':>8} {'':>8} "
            f"{statistics.mean(extra):+10.1f}"
        )
    name, data = photos(args.long_side)["one face"][0]
    print(f"\nstages on {name} (median of {args.repeat}):")
    for stage, ms in stages_ms(taggers["faces on"], data, args.repeat).items():
        print(f"  {stage:<28} {ms:7.2f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
