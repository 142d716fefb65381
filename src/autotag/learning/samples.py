"""Real sample photos that ship inside installed packages (no download at run time).

scikit-image's data folder (astronaut, chelsea the cat, coffee, rocket, ...), scikit-learn's
two sample JPEGs (china, flower) and, when Debian's tuxpaint-stamps-default is installed,
its real photo cut-outs (animals, food, vehicles...) — enough for hundreds of test photos.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from autotag.checksums import bytes_sha256

PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png"}
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")


def _package_dir(module: str, *parts: str) -> Path | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    if mod.__file__ is None:  # a namespace package: no folder of its own
        return None
    return Path(os.path.dirname(mod.__file__), *parts)


def package_photos() -> list[Path]:
    """scikit-image and scikit-learn sample images, sorted by name."""
    found: list[Path] = []
    for d in (_package_dir("skimage", "data"), _package_dir("sklearn", "datasets", "images")):
        if d and d.is_dir():
            found += [p for p in d.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS]
    return sorted(found, key=lambda p: p.name)


def tuxpaint_photos(limit: int | None = None) -> list[Path]:
    """Tux Paint's stamp PNGs (photo cut-outs with alpha), in a stable order."""
    if not TUXPAINT_STAMPS.is_dir():
        return []
    files = sorted(
        p
        for p in TUXPAINT_STAMPS.rglob("*.png")
        if not p.name.endswith(("_mirror.png", "_flip.png"))
    )
    return files[:limit] if limit else files


def export(dest: Path, paths: list[Path]) -> list[Path]:
    """Copy photos into dest (flat, names made unique) and return the copies."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        target = dest / (p.name if len(paths) < 100 else f"{i:04d}_{p.name}")
        if not target.exists():
            shutil.copyfile(p, target)
        out.append(target)
    return out


def _write_distinct(
    n: int,
    dest: Path,
    seed: int,
    prefix: str,
    quality: int,
    shape: Callable[[np.ndarray, np.random.Generator], np.ndarray],
) -> list[Path]:
    """n JPEGs from the installed real photos, each reshaped by ``shape`` and made unique
    (a new content hash, so a new photo) by a corner block of random pixels."""
    bases = package_photos() + tuxpaint_photos()
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    out, seen = [], set()
    for i in range(n):
        base = bases[i % len(bases)]
        photo = cv2.imread(str(base), cv2.IMREAD_COLOR)
        if photo is None:
            raise ValueError(f"OpenCV could not read the sample photo {base}")
        img = shape(np.asarray(photo), rng)
        # A corner block of noise: a few marker pixels alone can vanish in JPEG quantization.
        corner = img[:8, :8]
        corner[...] = rng.integers(0, 256, corner.shape, dtype=np.uint8)
        data = _encode_jpeg(img, quality)
        while bytes_sha256(data) in seen:
            corner[...] = rng.integers(0, 256, corner.shape, dtype=np.uint8)
            data = _encode_jpeg(img, quality)
        seen.add(bytes_sha256(data))
        path = dest / f"{prefix}_{seed}_{i:05d}.jpg"
        path.write_bytes(data)
        out.append(path)
    return out


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def make_distinct_photos(n: int, dest: Path, long_side: int = 640, seed: int = 0) -> list[Path]:
    """n distinct JPEGs for benchmarks and fault tests: real photos from installed packages,
    resized so their long side is ``long_side``."""

    def resize(img: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        scale = long_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)

    return _write_distinct(n, dest, seed, "photo", 90, resize)


def make_phone_photos(n: int, dest: Path, seed: int = 0) -> list[Path]:
    """n distinct 12-megapixel JPEGs (4000×3000, quality 92) like a phone's: real photos
    from installed packages enlarged, with sensor-like grain so they weigh what a phone's do
    (about 3-5 MB)."""
    # One grain field, shifted differently for each photo (drawing 36 M numbers per photo
    # would cost more than everything else here).
    field = np.random.default_rng(seed).integers(-10, 11, (3064, 4064, 3), dtype=np.int16)

    def enlarge(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = cv2.resize(img, (4000, 3000), interpolation=cv2.INTER_CUBIC)
        dy, dx = rng.integers(0, 64, 2)
        return np.clip(img + field[dy : dy + 3000, dx : dx + 4000], 0, 255).astype(np.uint8)

    return _write_distinct(n, dest, seed, "phone", 92, enlarge)
