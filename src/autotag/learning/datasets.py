"""Training data: the seed's label file, photo look-up, and two real datasets to prepare.

Labels follow Flickr's Hadoop job (``class,photo_id,label`` with ``TRUE``/``FALSE``): each
class has its own positives and negatives, and a photo with no row for a class is simply not
used for that class. In memory that is a matrix ``Y`` (photos x classes) of int8 with
``1`` = TRUE, ``0`` = FALSE and ``-1`` = unlabeled.

A ``photo_id`` names a file under the images directory, tried in this order: the relative
path (``animals/cat.png``), the relative path without its extension (``animals/cat``), then
the bare file-name stem (``cat``) when that stem is unique under the directory.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.errors import AutotagError
from autotag.learning.progress import Progress, Stage
from autotag.vision.decode import composite_on_white

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}
)
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")


@dataclass
class LabelSet:
    """Photos x classes labels: ``Y[i, j]`` is 1 (TRUE), 0 (FALSE) or -1 (no label)."""

    classes: list[str]
    photo_ids: list[str]
    Y: np.ndarray
    source: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.Y = np.asarray(self.Y, dtype=np.int8)
        if self.Y.shape != (len(self.photo_ids), len(self.classes)):
            raise ValueError(
                f"Y shape {self.Y.shape} != ({len(self.photo_ids)}, {len(self.classes)})"
            )

    @property
    def n_photos(self) -> int:
        return len(self.photo_ids)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per class: positives and negatives (what a reader checks first for imbalance)."""
        pos = (self.Y == 1).sum(axis=0)
        neg = (self.Y == 0).sum(axis=0)
        return {
            c: {"pos": int(p), "neg": int(n)}
            for c, p, n in zip(self.classes, pos, neg, strict=True)
        }

    def subset(self, rows: Sequence[int] | np.ndarray) -> LabelSet:
        rows = np.asarray(rows, dtype=np.int64)
        return LabelSet(
            list(self.classes), [self.photo_ids[i] for i in rows], self.Y[rows], self.source
        )

    def select_classes(self, names: Iterable[str]) -> LabelSet:
        idx = [self.classes.index(n) for n in names]
        return LabelSet(
            [self.classes[i] for i in idx], list(self.photo_ids), self.Y[:, idx], self.source
        )

    def exclusive_classes(self) -> list[int] | None:
        """Columns where every labeled photo has exactly one positive (top-1 accuracy applies).

        All classes if each photo has exactly one TRUE; else, for hierarchical names
        (``animals/mammals``), the top-level classes when they are mutually exclusive.
        Photos with no positive among them are left out of top-1 figures.
        """
        if not self.classes:
            return None
        for cols in (
            list(range(len(self.classes))),
            [j for j, c in enumerate(self.classes) if "/" not in c],
        ):
            if len(cols) < 2:
                continue
            npos = (self.Y[:, cols] == 1).sum(axis=1)
            if npos.max(initial=0) == 1 and (npos == 1).sum() >= max(2, 0.5 * self.n_photos):
                return cols
        return None

    def write_csv(self, path: Path) -> None:
        """Write the seed format; rows for every labeled (photo, class) pair, class-major."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "photo_id", "label"])
            for j, c in enumerate(self.classes):
                col = self.Y[:, j]
                for i in np.flatnonzero(col >= 0):
                    w.writerow([c, self.photo_ids[i], "TRUE" if col[i] == 1 else "FALSE"])
        os.replace(tmp, path)


def _parse_bool(raw: str, where: str) -> int:
    v = raw.strip().lower()
    if v in _TRUE:
        return 1
    if v in _FALSE:
        return 0
    raise AutotagError(f"{where}: label must be TRUE or FALSE, got {raw!r}")


def read_labels(path: Path | str) -> LabelSet:
    """Parse ``class,photo_id,label`` rows (optional header, ``#`` comments, blank lines).

    A contradictory pair (same class and photo both TRUE and FALSE) is an error, since
    silently keeping one would train on a label nobody chose.
    """
    path = Path(path)
    if not path.is_file():
        raise AutotagError(f"labels file not found: {path}")
    classes: dict[str, int] = {}
    photos: dict[str, int] = {}
    rows: list[tuple[int, int, int]] = []
    with path.open(newline="") as fh:
        for lineno, rec in enumerate(csv.reader(fh), start=1):
            if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
                continue
            if len(rec) != 3:
                raise AutotagError(f"{path}:{lineno}: expected class,photo_id,label, got {rec!r}")
            cls, pid, lab = (x.strip() for x in rec)
            if lineno == 1 and lab.lower() == "label":
                continue  # header
            if not cls or not pid:
                raise AutotagError(f"{path}:{lineno}: empty class or photo_id")
            ci = classes.setdefault(cls, len(classes))
            pi = photos.setdefault(pid, len(photos))
            rows.append((pi, ci, _parse_bool(lab, f"{path}:{lineno}")))
    if not rows:
        raise AutotagError(f"{path}: no labels")
    arr = np.asarray(rows, dtype=np.int64)
    Y = np.full((len(photos), len(classes)), -1, dtype=np.int8)
    Y[arr[:, 0], arr[:, 1]] = arr[:, 2]
    # Contradictions: a pair whose stored value differs from one of its rows.
    bad = Y[arr[:, 0], arr[:, 1]] != arr[:, 2]
    if bad.any():
        pi, ci, _ = arr[np.flatnonzero(bad)[0]]
        pid = list(photos)[pi]
        cls = list(classes)[ci]
        raise AutotagError(f"{path}: photo {pid!r} is both TRUE and FALSE for class {cls!r}")
    return LabelSet(list(classes), list(photos), Y, source=str(path))


def scan_images(root: Path) -> list[Path]:
    """Every image file under root (sorted, so runs are reproducible)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Path(dirpath) / name)
    return out


def resolve_photos(
    images_dir: Path | str, photo_ids: Sequence[str], *, allow_missing: bool = False
) -> tuple[list[Path | None], list[str]]:
    """Map photo ids to files (see module doc). Returns (paths with None for missing, missing ids).

    Missing photos are an error unless allow_missing: a wrong ``--images`` would otherwise
    train on nothing and look like success.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise AutotagError(f"images directory not found: {root}")
    by_rel: dict[str, Path] = {}
    by_noext: dict[str, Path] = {}
    by_stem: dict[str, Path | None] = {}
    for p in scan_images(root):
        rel = p.relative_to(root).as_posix()
        by_rel[rel] = p
        by_noext.setdefault(rel.rsplit(".", 1)[0], p)
        by_stem[p.stem] = None if p.stem in by_stem else p  # None marks an ambiguous stem
    paths: list[Path | None] = []
    missing: list[str] = []
    for pid in photo_ids:
        key = pid.replace("\\", "/")
        key = key[2:] if key.startswith("./") else key
        found = by_rel.get(key) or by_noext.get(key) or by_stem.get(key)
        if found is None:
            missing.append(pid)
        paths.append(found)
    if missing and not allow_missing:
        show = ", ".join(repr(m) for m in missing[:3])
        raise AutotagError(
            f"{len(missing)} of {len(photo_ids)} photo ids have no image under {root} "
            f"(e.g. {show}); photo_id is a relative path or a unique file-name stem"
        )
    return paths, missing


def dataset_name(labels: LabelSet) -> str:
    """``fashion-mnist/train`` from a prepared dataset's dataset.json, else the folder name."""
    src = labels.source.removeprefix("folders:")
    p = Path(src) if src else Path.cwd()
    for d in (p.parent, p) if p.is_file() else (p,):
        meta = d / "dataset.json"
        if meta.is_file():
            try:
                m = json.loads(meta.read_text())
                return "/".join(x for x in (m.get("name"), m.get("split")) if x)
            except (OSError, ValueError):
                pass
    return (p.parent if p.is_file() else p).name or "dataset"


def folder_labels(root: Path | str) -> LabelSet:
    """Folder-per-class layout: ``root/<class>/**/image``; each photo is TRUE for its folder only.

    Images directly under root are negatives for every class (background photos).
    """
    root = Path(root)
    if not root.is_dir():
        raise AutotagError(f"images directory not found: {root}")
    files = scan_images(root)
    classes = sorted(
        {p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1}
    )
    if not classes:
        raise AutotagError(f"{root}: no class folders with images")
    index = {c: j for j, c in enumerate(classes)}
    Y = np.zeros((len(files), len(classes)), dtype=np.int8)
    ids = []
    for i, p in enumerate(files):
        rel = p.relative_to(root)
        ids.append(rel.as_posix())
        if len(rel.parts) > 1:
            Y[i, index[rel.parts[0]]] = 1
    return LabelSet(classes, ids, Y, source=f"folders:{root}")


# ---------------------------------------------------------------------------------------------
# Dataset preparation


def _read_idx(path: Path) -> np.ndarray:
    """IDX (MNIST) file, gzip or plain, to a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise AutotagError(f"{path}: not a uint8 IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise AutotagError(f"{path}: truncated IDX file")
    return arr.reshape(shape)


def _done(out: Path, meta: dict) -> bool:
    """True if out already holds a finished preparation with the same parameters."""
    f = out / "dataset.json"
    if not (f.is_file() and (out / "labels.csv").is_file()):
        return False
    try:
        old = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return all(old.get(k) == v for k, v in meta.items() if k != "created")


def _finish(out: Path, meta: dict) -> dict:
    meta = {**meta, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    tmp = out / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / "dataset.json")
    return meta


def fashion_mnist_arrays(
    split: str, source: Path | str = FASHION_MNIST_DIR, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 28, 28), labels int64 (n,))`` of the ``train`` or ``test`` split,
    read straight from the Debian package's IDX files (the first ``limit`` of them)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    img_f = Path(source) / f"{prefix}-images-idx3-ubyte.gz"
    if not img_f.is_file():
        raise AutotagError(
            f"Fashion-MNIST not found at {source} (apt install dataset-fashion-mnist)"
        )
    images = _read_idx(img_f)[:limit]
    labels = _read_idx(Path(source) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)[:limit]
    return images, labels


def prepare_fashion_mnist(
    out: Path | str,
    *,
    source: Path | str = FASHION_MNIST_DIR,
    limit: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, dict]:
    """Write ``out/{train,test}/images/NNNNN.png`` + ``labels.csv`` (10 one-vs-rest rows each).

    The official split is kept (60,000 train / 10,000 test) so test figures are comparable with
    published ones; ``limit`` keeps the first N of each split (tests, quick looks).
    """
    import cv2

    out, source = Path(out), Path(source)
    result = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img_f = source / f"{prefix}-images-idx3-ubyte.gz"
        lab_f = source / f"{prefix}-labels-idx1-ubyte.gz"
        if not img_f.is_file():
            raise AutotagError(
                f"Fashion-MNIST not found at {source} (apt install dataset-fashion-mnist)"
            )
        d = out / split
        meta: dict[str, Any] = {
            "name": "fashion-mnist",
            "split": split,
            "source": str(source),
            "limit": limit,
            "classes": FASHION_MNIST_CLASSES,
            "labels": "one-vs-rest TRUE/FALSE for every class; classes are exclusive",
        }
        if not force and _done(d, meta):
            result[split] = json.loads((d / "dataset.json").read_text())
            continue
        images = _read_idx(img_f)
        labels = _read_idx(lab_f).astype(np.int64)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        (d / "images").mkdir(parents=True, exist_ok=True)
        ids = []
        bar = Stage(progress, f"fashion-mnist {split}", len(images), "img")
        for i in range(len(images)):
            pid = f"{i:05d}"
            p = d / "images" / f"{pid}.png"
            if force or not p.is_file():
                if not cv2.imwrite(str(p), images[i]):
                    raise AutotagError(f"cannot write {p}")
            ids.append(pid)
            bar.advance()
        Y = np.zeros((len(ids), len(FASHION_MNIST_CLASSES)), dtype=np.int8)
        Y[np.arange(len(ids)), labels] = 1
        LabelSet(list(FASHION_MNIST_CLASSES), ids, Y).write_csv(d / "labels.csv")
        meta["n_images"] = len(ids)
        meta["counts"] = {c: int(n) for c, n in zip(FASHION_MNIST_CLASSES, Y.sum(0), strict=True)}
        result[split] = _finish(d, meta)
    return result


def _stamp_on_white(img: np.ndarray) -> np.ndarray:
    """A stamp as OpenCV reads it (grey, BGR or BGRA, any depth) as BGR uint8 over white,
    the way it looks on a blank canvas."""
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 3:
        return img
    if img.shape[2] == 2:  # grey + alpha
        return np.repeat(composite_on_white(img[:, :, :1], img[:, :, 1]), 3, axis=2)
    return composite_on_white(img[:, :, :3], img[:, :, 3])


def tuxpaint_classes(
    rel_paths: Sequence[str], min_images: int = 10
) -> tuple[list[str], np.ndarray]:
    """Hierarchical multi-label classes: every folder prefix holding >= min_images images.

    ``animals/mammals/cat.png`` is TRUE for ``animals`` and ``animals/mammals``; FALSE for the
    other kept classes.
    """
    prefixes: list[list[str]] = []
    count: dict[str, int] = {}
    for rel in rel_paths:
        parts = rel.split("/")[:-1]
        mine = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        prefixes.append(mine)
        for m in mine:
            count[m] = count.get(m, 0) + 1
    classes = sorted(c for c, n in count.items() if n >= min_images)
    index = {c: j for j, c in enumerate(classes)}
    Y = np.zeros((len(rel_paths), len(classes)), dtype=np.int8)
    for i, mine in enumerate(prefixes):
        for m in mine:
            if m in index:
                Y[i, index[m]] = 1
    return classes, Y


def prepare_tuxpaint(
    out: Path | str,
    *,
    source: Path | str = TUXPAINT_DIR,
    min_images: int = 10,
    limit: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Write ``out/images/<category path>/<name>.png`` (alpha over white) + ``out/labels.csv``.

    photo_id is the relative path (stems repeat across folders). Stamps whose folders all have
    fewer than min_images images stay in as negatives for every class.
    """
    import cv2

    out, source = Path(out), Path(source)
    if not source.is_dir():
        raise AutotagError(
            f"Tux Paint stamps not found at {source} (apt install tuxpaint-stamps-default)"
        )
    files = [p for p in scan_images(source) if p.suffix.lower() == ".png"]
    if limit is not None:
        files = files[:limit]
    rels = [p.relative_to(source).as_posix() for p in files]
    meta = {
        "name": "tuxpaint",
        "source": str(source),
        "min_images": min_images,
        "limit": limit,
        "labels": "hierarchical multi-label: every folder prefix with >= min_images images",
    }
    if not force and _done(out, meta):
        return json.loads((out / "dataset.json").read_text())
    classes, Y = tuxpaint_classes(rels, min_images)
    if not classes:
        raise AutotagError(f"no Tux Paint folder has {min_images} or more images")
    kept_ids, kept_rows, skipped = [], [], []
    bar = Stage(progress, "tuxpaint", len(files), "img")
    for i, (p, rel) in enumerate(zip(files, rels, strict=True)):
        bar.advance()
        dst = out / "images" / rel
        if force or not dst.is_file():
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if img is None:
                skipped.append(rel)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(dst), _stamp_on_white(img)):
                raise AutotagError(f"cannot write {dst}")
        kept_ids.append(rel)
        kept_rows.append(i)
    labels = LabelSet(classes, kept_ids, Y[kept_rows])
    labels.write_csv(out / "labels.csv")
    meta.update(
        n_images=len(kept_ids),
        skipped=skipped,
        classes=classes,
        counts={c: v["pos"] for c, v in labels.counts().items()},
        unlabeled_images=int((labels.Y.sum(axis=1) == 0).sum()),
    )
    return _finish(out, meta)


DATASETS = {"fashion-mnist": prepare_fashion_mnist, "tuxpaint": prepare_tuxpaint}
