"""Label files, photo look-up and dataset preparation, on real (small) data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from autotag.errors import AutotagError
from autotag.learning.datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    TUXPAINT_DIR,
    LabelSet,
    _read_idx,
    folder_labels,
    prepare_fashion_mnist,
    prepare_tuxpaint,
    read_labels,
    resolve_photos,
    tuxpaint_classes,
)

needs_fmnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed"
)
needs_tux = pytest.mark.skipif(not TUXPAINT_DIR.is_dir(), reason="tuxpaint-stamps not installed")


def test_read_labels_seed_format(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text(
        "class,photo_id,label\n"
        "dog,1,TRUE\n"
        "dog,2,FALSE\n"
        "dog,3,true\n"
        "# a comment\n"
        "\n"
        "cat,1,FALSE\n"
        "cat,2,TRUE\n"
    )
    labels = read_labels(f)
    assert labels.classes == ["dog", "cat"]
    assert labels.photo_ids == ["1", "2", "3"]
    # photo 3 has no cat row: unlabeled (-1), not a negative
    np.testing.assert_array_equal(labels.Y, [[1, 0], [0, 1], [1, -1]])
    assert labels.counts() == {"dog": {"pos": 2, "neg": 1}, "cat": {"pos": 1, "neg": 1}}


def test_read_labels_rejects_contradictions_and_bad_values(tmp_path: Path) -> None:
    f = tmp_path / "l.csv"
    f.write_text("dog,1,TRUE\ndog,1,FALSE\n")
    with pytest.raises(AutotagError, match="both TRUE and FALSE"):
        read_labels(f)
    f.write_text("dog,1,maybe\n")
    with pytest.raises(AutotagError, match=r"l\.csv:1: label must be TRUE or FALSE"):
        read_labels(f)
    f.write_text("dog,1\n")
    with pytest.raises(AutotagError, match="expected class,photo_id,label"):
        read_labels(f)


def test_write_csv_round_trip(tmp_path: Path) -> None:
    Y = np.array([[1, 0, -1], [0, 1, 1]], dtype=np.int8)
    LabelSet(["a", "b", "c/d"], ["x", "y"], Y).write_csv(tmp_path / "l.csv")
    back = read_labels(tmp_path / "l.csv")
    assert back.classes == ["a", "b", "c/d"]
    np.testing.assert_array_equal(back.Y, Y)


def test_resolve_photos_by_path_noext_and_stem(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for rel in ("a/cat.png", "b/cat.png", "a/dog.jpg", "x.png"):
        (tmp_path / rel).write_bytes(b"")
    paths, missing = resolve_photos(tmp_path, ["a/cat.png", "b/cat", "dog", "x", "./x.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "a/cat.png",
        "b/cat.png",
        "a/dog.jpg",
        "x.png",
        "x.png",
    ]
    assert missing == []
    # "cat" is ambiguous (two folders), "nope" does not exist: both are missing
    with pytest.raises(AutotagError, match="2 of 3 photo ids have no image"):
        resolve_photos(tmp_path, ["cat", "nope", "x"])
    paths, missing = resolve_photos(tmp_path, ["cat", "x"], allow_missing=True)
    assert paths[0] is None and missing == ["cat"]


def test_folder_labels(tmp_path: Path) -> None:
    for rel in ("shoes/1.png", "shoes/deep/2.png", "bags/3.png", "background.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    labels = folder_labels(tmp_path)
    assert labels.classes == ["bags", "shoes"]
    got = dict(zip(labels.photo_ids, labels.Y.tolist(), strict=True))
    assert got == {
        "background.png": [0, 0],
        "bags/3.png": [1, 0],
        "shoes/1.png": [0, 1],
        "shoes/deep/2.png": [0, 1],
    }


def test_tuxpaint_hierarchy_and_exclusive_top_level() -> None:
    rels = [f"animals/mammals/m{i}.png" for i in range(6)]
    rels += [f"animals/birds/b{i}.png" for i in range(5)]
    rels += [f"food/f{i}.png" for i in range(10)]
    rels += ["people/p.png"]
    classes, Y = tuxpaint_classes(rels, min_images=5)
    assert classes == ["animals", "animals/birds", "animals/mammals", "food"]
    assert Y[0].tolist() == [1, 0, 1, 0]  # animals + animals/mammals
    assert Y[6].tolist() == [1, 1, 0, 0]
    assert Y[-1].tolist() == [0, 0, 0, 0]  # folder too small: a negative everywhere
    labels = LabelSet(classes, rels, Y)
    assert [classes[j] for j in labels.exclusive_classes()] == ["animals", "food"]


@needs_fmnist
def test_prepare_fashion_mnist_slice(tmp_path: Path) -> None:
    meta = prepare_fashion_mnist(tmp_path, limit=40)
    assert meta["train"]["n_images"] == 40 and meta["test"]["n_images"] == 40
    truth = _read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:40]
    pixels = _read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:40]
    labels = read_labels(tmp_path / "test" / "labels.csv")
    assert labels.classes == FASHION_MNIST_CLASSES
    assert (labels.Y >= 0).all()  # every (photo, class) pair has a TRUE/FALSE row
    np.testing.assert_array_equal(labels.Y.argmax(axis=1), truth)
    assert labels.exclusive_classes() == list(range(10))
    paths, _ = resolve_photos(tmp_path / "test" / "images", labels.photo_ids)
    img = cv2.imread(str(paths[7]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(img, pixels[7])  # lossless PNG
    # A second call with the same parameters is a no-op (idempotent)
    mtime = (tmp_path / "test" / "labels.csv").stat().st_mtime_ns
    prepare_fashion_mnist(tmp_path, limit=40)
    assert (tmp_path / "test" / "labels.csv").stat().st_mtime_ns == mtime


@needs_tux
def test_prepare_tuxpaint_slice(tmp_path: Path) -> None:
    meta = prepare_tuxpaint(tmp_path, limit=120, min_images=10)
    labels = read_labels(tmp_path / "labels.csv")
    assert labels.classes == meta["classes"]
    assert "animals" in labels.classes and "animals/birds" in labels.classes
    i = labels.photo_ids.index(next(p for p in labels.photo_ids if p.startswith("animals/birds/")))
    row = dict(zip(labels.classes, labels.Y[i].tolist(), strict=True))
    assert row["animals"] == 1 and row["animals/birds"] == 1
    # alpha composited onto white: 3 channels, and a transparent corner became white
    src = cv2.imread(str(TUXPAINT_DIR / labels.photo_ids[i]), cv2.IMREAD_UNCHANGED)
    out = cv2.imread(str(tmp_path / "images" / labels.photo_ids[i]), cv2.IMREAD_UNCHANGED)
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[:2] == src.shape[:2]
    transparent = src[:, :, 3] == 0
    assert transparent.any()
    assert (out[transparent] == 255).all()
