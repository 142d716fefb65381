"""Real sample photos that ship inside installed packages (no download at run time).

scikit-image's data folder (astronaut, chelsea the cat, coffee, rocket, ...), scikit-learn's
two sample JPEGs (china, flower) and, when Debian's tuxpaint-stamps-default is installed,
its real photo cut-outs (animals, food, vehicles...) — enough for hundreds of test photos.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png"}
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")


def _package_dir(module: str, *parts: str) -> Path | None:
    try:
        mod = __import__(module)
    except ImportError:
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
