"""VectorIndex: exactness against numpy, recall of the approximate modes, incremental updates.

Real vectors are Fashion-MNIST test images (centred, L2-normalised pixels, 784-d); random
vectors are 1,280-d like the ``cnn`` feature set.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from autotag.similarity.duplicates import find_duplicate_groups
from autotag.similarity.index import MODES, VectorIndex

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
APPROXIMATE = ("fp16", "int8", "ivf", "hnsw")


def load_idx_images(path: Path, limit: int) -> np.ndarray:
    """Parse a gzip IDX3 file (magic 2051, count, rows, cols, then uint8 pixels)."""
    with gzip.open(path) as fh:
        raw = fh.read()
    magic, count, rows, cols = np.frombuffer(raw[:16], dtype=">i4")
    assert magic == 2051
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    return pixels[:limit].astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def fashion() -> tuple[list[str], np.ndarray, np.ndarray]:
    """4,000 database images and 200 held-out query images."""
    if not FASHION.is_file():
        pytest.skip(f"{FASHION} not installed")
    x = load_idx_images(FASHION, 4200)
    x -= x.mean(axis=0)
    x = normalise(x)
    # Fashion-MNIST has a few byte-identical images; keep one of each so ranks are unique.
    _, first = np.unique(x[:4000], axis=0, return_index=True)
    db = x[np.sort(first)]
    return [f"fm{i:05d}" for i in range(len(db))], db, x[4000:]


@pytest.fixture(scope="module")
def randoms() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    db = normalise(rng.standard_normal((3000, 1280), dtype=np.float32))
    queries = normalise(rng.standard_normal((100, 1280), dtype=np.float32))
    return [f"r{i:05d}" for i in range(len(db))], db, queries


def brute_force(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ db.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def recall_at(index: VectorIndex, ids: list[str], db: np.ndarray, queries: np.ndarray, k=10):
    truth, _ = brute_force(db, queries, k)
    got = index.search(queries, k)
    hits = [
        len({ids[j] for j in t} & {pid for pid, _ in g}) for t, g in zip(truth, got, strict=True)
    ]
    return sum(hits) / (k * len(queries))


def assert_exact(index: VectorIndex, ids: list[str], db: np.ndarray, queries: np.ndarray, k=10):
    truth, truth_scores = brute_force(db, queries, k)
    for t, ts, got in zip(truth, truth_scores, index.search(queries, k), strict=True):
        assert len(got) == k
        np.testing.assert_allclose([s for _, s in got], ts, atol=1e-5)
        # ids in the same order, except among scores tied to within float32 rounding
        for j, (pid, _score) in enumerate(got):
            if pid != ids[t[j]]:
                assert (
                    abs(ts[j] - (ts[j + 1] if j + 1 < k else -9)) < 1e-5
                    or abs(ts[j] - ts[j - 1]) < 1e-5
                )


@pytest.mark.parametrize("data", ["fashion", "randoms"])
def test_exact_equals_numpy(data: str, request: pytest.FixtureRequest) -> None:
    ids, db, queries = request.getfixturevalue(data)
    index = VectorIndex(db.shape[1], "exact", segment_rows=1024)  # several segments
    index.add(ids, db)
    assert len(index) == len(db)
    assert_exact(index, ids, db, queries)
    single = index.search(queries[0], 10)  # (d,) query -> one list, scanned in parallel
    assert single == index.search(queries[:1], 10)[0]


@pytest.mark.parametrize("mode", APPROXIMATE)
def test_recall_on_real_images(mode: str, fashion) -> None:
    ids, db, queries = fashion
    index = VectorIndex(db.shape[1], mode, train_size=1000, segment_rows=1024)
    index.add(ids, db)
    assert index.active_mode == mode
    assert recall_at(index, ids, db, queries) >= 0.95


@pytest.mark.parametrize("mode", ["fp16", "int8", "hnsw"])
def test_recall_on_random_vectors(mode: str, randoms) -> None:
    ids, db, queries = randoms
    index = VectorIndex(db.shape[1], mode, train_size=1000)
    index.add(ids, db)
    assert recall_at(index, ids, db, queries) >= 0.95


def test_ivf_recall_on_random_vectors_needs_a_wide_probe(randoms) -> None:
    """Uniform random vectors have no clusters, IVF's worst case: recall grows with nprobe
    and reaches 0.95 only when most lists are probed (76 lists here)."""
    ids, db, queries = randoms
    index = VectorIndex(db.shape[1], "ivf", train_size=1000, nprobe=8)
    index.add(ids, db)
    narrow = recall_at(index, ids, db, queries)
    index.nprobe = 72
    wide = recall_at(index, ids, db, queries)
    assert narrow < wide and wide >= 0.95
    index.nprobe = 10_000  # clamped to nlist: every list is scanned, i.e. exact
    assert index.nprobe < 10_000
    assert recall_at(index, ids, db, queries) == 1.0


def test_range_search_is_strict_threshold(fashion) -> None:
    ids, db, queries = fashion
    index = VectorIndex(db.shape[1], "exact", segment_rows=1000)
    index.add(ids, db)
    for q in queries[:20]:
        scores = db @ q
        top = np.sort(scores)
        threshold = float((top[-15] + top[-16]) / 2)  # clear of float rounding either side
        got = index.range_search(q, threshold)
        want = {ids[j] for j in np.flatnonzero(scores > threshold)}
        assert {pid for pid, _ in got} == want
        assert all(s > threshold for _, s in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        topk = index.search(q, 50, min_score=threshold)
        assert {pid for pid, _ in topk} == want
    # Strictly greater, as in the seed's `DOT_PRODUCT(..) > 0.9`: a score equal to it is out.
    unit = VectorIndex(4, "exact")
    unit.add(["x", "y"], np.array([[1, 0, 0, 0], [0.5, 0.75**0.5, 0, 0]], dtype=np.float32))
    assert unit.range_search(np.array([1, 0, 0, 0], np.float32), 1.0) == []
    assert unit.search(np.array([1, 0, 0, 0], np.float32), 5, min_score=0.5) == [("x", 1.0)]
    assert unit.range_search(np.array([1, 0, 0, 0], np.float32), 0.4999) == [
        ("x", 1.0),
        ("y", 0.5),
    ]


@pytest.mark.parametrize("mode", APPROXIMATE)
def test_range_search_approximate_modes(mode: str, fashion) -> None:
    ids, db, queries = fashion
    index = VectorIndex(db.shape[1], mode, train_size=1000, segment_rows=1024)
    index.add(ids, db)
    q = queries[0]
    want = {ids[j] for j in np.flatnonzero(db @ q > 0.8)}
    got = {pid for pid, _ in index.range_search(q, 0.8)}
    assert len(got & want) >= 0.9 * len(want)
    assert len(got - want) <= 0.1 * max(1, len(want))


def test_model_check_updates_and_swap_removals() -> None:
    """Random adds/updates/removes against a dict model; tiny segments stress row moves."""
    rng = np.random.default_rng(3)
    dim = 32
    index = VectorIndex(dim, "exact", segment_rows=7)
    model: dict[str, np.ndarray] = {}
    for step in range(300):
        op = rng.random()
        if op < 0.5 or len(model) < 5:
            n = int(rng.integers(1, 12))
            ids = [f"id{int(x)}" for x in rng.integers(0, 120, n)]  # overlaps -> updates
            vecs = normalise(rng.standard_normal((n, dim), dtype=np.float32))
            index.add(ids, vecs)
            for pid, v in zip(ids, vecs, strict=True):
                model[pid] = v
        else:
            victims = list(rng.choice(sorted(model), size=min(len(model), 4), replace=False))
            victims.append("never-added")
            assert index.remove(victims) == len(victims) - 1
            for pid in victims[:-1]:
                del model[pid]
        assert len(index) == len(model)
        if step % 10 == 0:
            keys = sorted(model)
            db = np.stack([model[k] for k in keys])
            q = normalise(rng.standard_normal((3, dim), dtype=np.float32))
            assert_exact(index, keys, db, q, k=min(5, len(keys)))
            for k in keys[:5]:
                np.testing.assert_allclose(index.vector(k), model[k], atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_update_and_remove_every_mode(mode: str, fashion) -> None:
    ids, db, queries = fashion
    ids, db = ids[:1500], db[:1500]
    index = VectorIndex(db.shape[1], mode, train_size=1000, segment_rows=512)
    index.add(ids[:1200], db[:1200])
    index.add(ids[1200:], db[1200:])  # incremental add after training
    # Update: photo fm00000 now looks like the first query image.
    index.add([ids[0]], queries[:1])
    assert index.search(queries[0], 1)[0][0] == ids[0]
    assert len(index) == len(ids)
    # Remove: a removed photo never comes back, even when it is the exact match.
    target = ids[10]
    assert index.remove([target]) == 1
    assert target not in index and len(index) == len(ids) - 1
    assert all(pid != target for pid, _ in index.search(db[10], 20))
    assert all(pid != target for pid, _ in index.range_search(db[10], 0.5))
    # Mass removal (HNSW rebuilds its graph past 25% tombstones) keeps answers right.
    gone = ids[100:800]
    index.remove(gone)
    left = [i for i in ids[1:] if i not in set(gone) and i != target]
    assert len(index) == len(left) + 1
    sample = [ids.index(p) for p in left[::97]]
    for j in sample:
        assert index.search(db[j], 1)[0][0] == ids[j]


def test_hnsw_tombstones_are_filtered_then_compacted(randoms) -> None:
    ids, db, _ = randoms
    index = VectorIndex(db.shape[1], "hnsw", rebuild_fraction=0.5)
    index.add(ids[:1000], db[:1000])
    index.remove(ids[:300])  # 30% dead: filtered by the selector, not rebuilt yet
    store = index._store
    assert store.dead == 300 and store.index.ntotal == 1000
    hits = index.search(db[0], 10)
    assert ids[0] not in {p for p, _ in hits} and len(hits) == 10
    index.remove(ids[300:600])  # 60% dead: rebuilt
    assert store is not index._store or index._store.dead == 0
    assert index._store.index.ntotal == 400
    assert index.search(db[700], 1)[0][0] == ids[700]


@pytest.mark.parametrize("mode", MODES)
def test_save_and_load_roundtrip(mode: str, fashion, tmp_path: Path) -> None:
    ids, db, queries = fashion
    index = VectorIndex(db.shape[1], mode, train_size=1000, segment_rows=1024)
    index.add(ids[:2000], db[:2000])
    index.remove(ids[:5])
    index.save(tmp_path / "idx", extra={"high_seq": 42})
    loaded, extra = VectorIndex.load(tmp_path / "idx")
    assert extra == {"high_seq": 42}
    assert len(loaded) == len(index) and loaded.active_mode == index.active_mode
    assert loaded.search(queries[:5], 10) == index.search(queries[:5], 10)
    loaded.add(["new"], queries[5:6])  # still mutable after a load
    assert loaded.search(queries[5], 1)[0][0] == "new"


def test_bootstrap_is_exact_until_trained(fashion) -> None:
    ids, db, queries = fashion
    index = VectorIndex(db.shape[1], "int8", train_size=500)
    index.add(ids[:499], db[:499])
    assert index.active_mode == "exact"
    assert_exact(index, ids[:499], db[:499], queries[:10])
    index.add(ids[499:600], db[499:600])
    assert index.active_mode == "int8" and len(index) == 600


def test_memory_per_vector_matches_the_codec(randoms) -> None:
    ids, db, _ = randoms
    sizes = {}
    for mode in ("exact", "fp16", "int8"):
        index = VectorIndex(db.shape[1], mode, train_size=100)
        index.add(ids, db)
        sizes[mode] = index._store.memory_bytes() / len(db)
    assert sizes == {"exact": 1280 * 4, "fp16": 1280 * 2, "int8": 1280}


def test_duplicate_groups(randoms) -> None:
    ids, db, _ = randoms
    rng = np.random.default_rng(1)
    base = db[:300]
    copies = normalise(base[:20] + 0.002 * rng.standard_normal((20, 1280), dtype=np.float32))
    third = normalise(base[:5] + 0.002 * rng.standard_normal((5, 1280), dtype=np.float32))
    index = VectorIndex(1280, "exact")
    index.add(ids[:300], base)
    index.add([f"copy{i}" for i in range(20)], copies)
    index.add([f"third{i}" for i in range(5)], third)
    groups = find_duplicate_groups(index, 0.98, batch=64)
    assert len(groups) == 20
    assert [g["size"] for g in groups] == [3] * 5 + [2] * 15
    want = {tuple(sorted([ids[i], f"copy{i}", f"third{i}"])) for i in range(5)}
    want |= {tuple(sorted([ids[i], f"copy{i}"])) for i in range(5, 20)}
    assert {tuple(g["photo_ids"]) for g in groups} == want
    assert all(g["top_score"] > 0.98 for g in groups)


def test_rejects_bad_input() -> None:
    index = VectorIndex(8, "exact")
    with pytest.raises(ValueError, match="dimension mismatch"):
        index.add(["a"], np.ones((1, 9), np.float32))
    with pytest.raises(ValueError, match="ids for"):
        index.add(["a", "b"], np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["a"], np.full((1, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown mode"):
        VectorIndex(8, "annoy")
    assert index.search(np.ones(8), 5) == []  # empty index
    index.add(["a", "a"], np.eye(8, dtype=np.float32)[:2])  # last row of a duplicate wins
    assert len(index) == 1 and index.search(np.eye(8)[1], 1) == [("a", 1.0)]
