"""On-disk feature cache: each photo's features are computed once per feature-set version.

Keyed by the photo's content sha256 (the photo id everywhere in autotag) and the feature set's
``name@version``, so renaming or moving files costs nothing and a new feature version never
reads stale vectors. Storage is append-only ``.npz`` shards (``keys`` + ``X`` float32), each
written to a temp file and renamed: a crash loses at most the chunk in flight, and the next
run skips everything already on disk (resumable). Photos that cannot be decoded are recorded
in ``failed.jsonl`` so they are not retried on every run. No pickle anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.checksums import file_sha256
from autotag.errors import AutotagError, ImageError
from autotag.learning.progress import Progress, Stage
from autotag.vision.decode import DecodeLimits, decode_file
from autotag.vision.features import ConcatFeatures, FeatureSet, concat_normalized

log = logging.getLogger(__name__)

# Hashing is only worth a progress bar for big photo sets (it reads every file once).
HASHING_BAR_FROM = 5000


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.+@" else "_" for ch in s)


class FeatureCache:
    """Features of one feature set (``name@version``, ``dim``) under ``root/<name>@<version>/``."""

    def __init__(self, root: Path | str, name: str, version: str, dim: int) -> None:
        self.key = f"{name}@{version}"
        self.dir = Path(root) / _safe(self.key)
        self.dim = int(dim)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "cache.json"
        info = {"format": "autotag-featcache/1", "feature_set": self.key, "dim": self.dim}
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("dim") != self.dim:
                raise AutotagError(
                    f"feature cache {self.dir} holds dim {old.get('dim')}, feature set says {self.dim}"
                )
        else:
            tmp = meta.with_name(f".cache.json.{os.getpid()}")
            tmp.write_text(json.dumps(info) + "\n")
            os.replace(tmp, meta)
        self._index: dict[str, tuple[Path, int]] = {}
        self._failed: dict[str, str] = {}
        self._seen_shards: set[Path] = set()
        self.refresh()

    @classmethod
    def for_feature_set(cls, fs: FeatureSet, root: Path | str) -> FeatureCache:
        return cls(root, fs.name, str(fs.version), fs.dim)

    def refresh(self) -> None:
        """Pick up shards written since (by this or another process)."""
        for shard in sorted(self.dir.glob("shard-*.npz")):
            if shard in self._seen_shards:
                continue
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys = z["keys"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                # a torn file from a crash (renames are atomic, but disks and people aren't)
                bad = shard.with_suffix(".corrupt")
                os.replace(shard, bad)
                log.warning("featcache: moved unreadable shard aside (%s): %s", exc, bad)
                continue
            self._seen_shards.add(shard)
            for row, k in enumerate(keys.tolist()):
                self._index.setdefault(str(k), (shard, row))
        failed = self.dir / "failed.jsonl"
        if failed.is_file():
            for line in failed.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # half-written last line
                self._failed[rec["sha256"]] = rec.get("reason", "")

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, sha: str) -> bool:
        return sha in self._index

    def failed_reason(self, sha: str) -> str | None:
        return self._failed.get(sha)

    def put(self, shas: Sequence[str], X: np.ndarray) -> Path | None:
        """Append one shard (atomic rename). Keys already present are not written again."""
        X = np.asarray(X, dtype=np.float32)
        if X.shape != (len(shas), self.dim):
            raise ValueError(f"features shape {X.shape}, expected ({len(shas)}, {self.dim})")
        new = [i for i, s in enumerate(shas) if s not in self._index]
        if not new:
            return None
        keys = np.asarray([shas[i] for i in new], dtype="<U64")
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.npz"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, X=X[new])
            fh.flush()
            os.fsync(fh.fileno())
        dst = self.dir / name
        os.replace(tmp, dst)
        self._seen_shards.add(dst)
        for row, k in enumerate(keys.tolist()):
            self._index[k] = (dst, row)
        return dst

    def mark_failed(self, sha: str, reason: str) -> None:
        self._failed[sha] = reason
        with (self.dir / "failed.jsonl").open("a") as fh:
            fh.write(json.dumps({"sha256": sha, "reason": reason}) + "\n")

    def get(self, shas: Sequence[str]) -> np.ndarray:
        """Features for shas (all must be cached), loading each shard once."""
        out = np.empty((len(shas), self.dim), dtype=np.float32)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, s in enumerate(shas):
            try:
                shard, row = self._index[s]
            except KeyError:
                raise KeyError(f"{s} not in feature cache {self.key}") from None
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            with np.load(shard, allow_pickle=False) as z:
                X = z["X"]
            idx = np.asarray(pairs, dtype=np.int64)
            out[idx[:, 0]] = X[idx[:, 1]]
        return out

    def compact(self) -> None:
        """Merge all shards into one (fewer files to open on the next run)."""
        self.refresh()
        if len(self._seen_shards) <= 1:
            return
        keys = sorted(self._index)
        X = self.get(keys)
        old = set(self._seen_shards)
        self._index.clear()
        self._seen_shards.clear()
        self.put(keys, X)
        for shard in old:
            shard.unlink(missing_ok=True)


@dataclass
class FeatureResult:
    """Features for a list of paths, aligned with it; ``ok`` is False where decoding failed."""

    shas: list[str]
    X: np.ndarray
    ok: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    failed: int = 0
    seconds: float = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "photos": len(self.shas),
            "computed": self.computed,
            "reused": self.reused,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
        }


def featurize(
    paths: Sequence[Path | str],
    feature_set: FeatureSet,
    cache_root: Path | str,
    *,
    limits: DecodeLimits,
    chunk: int = 256,
    progress: Progress | None = None,
) -> FeatureResult:
    """Features for every path with the bolt's own code (decode_file under ``limits``, then
    the feature set).

    Already-cached photos (by content sha256) are skipped; new ones are computed in chunks and
    each chunk is saved before the next starts, so an interrupted run resumes where it stopped.
    A concatenated set (``cnn+hog``) is assembled from its parts' caches, never stored itself.
    """
    t0 = time.perf_counter()
    if isinstance(feature_set, ConcatFeatures):
        return _featurize_concat(paths, feature_set, cache_root, limits, chunk, progress, t0)
    cache = FeatureCache.for_feature_set(feature_set, cache_root)
    files = [Path(p) for p in paths]
    hashing = Stage(
        progress if len(files) >= HASHING_BAR_FROM else None, "hashing", len(files), "img"
    )
    shas = []
    for p in files:
        shas.append(file_sha256(p))
        hashing.advance()
    todo: dict[str, Path] = {}
    for s, p in zip(shas, files, strict=True):
        if s not in cache and cache.failed_reason(s) is None and s not in todo:
            todo[s] = p
    computed = 0
    bar = Stage(progress, f"features {cache.key}", len(todo), "img")
    items = list(todo.items())
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        good_shas, imgs = [], []
        for s, p in part:
            try:
                imgs.append(decode_file(p, limits).bgr)
                good_shas.append(s)
            except ImageError as exc:
                cache.mark_failed(s, str(exc))
        if imgs:
            X = np.asarray(feature_set.extract(imgs), dtype=np.float32)
            cache.put(good_shas, X)
            computed += len(imgs)
        bar.advance(len(part))
    ok = np.asarray([s in cache for s in shas], dtype=bool)
    X = np.zeros((len(files), cache.dim), dtype=np.float32)
    if ok.any():
        X[ok] = cache.get([s for s, g in zip(shas, ok, strict=True) if g])
    reasons = {i: cache.failed_reason(s) or "" for i, s in enumerate(shas) if not ok[i]}
    n_unique_done = len({s for s, g in zip(shas, ok, strict=True) if g})
    return FeatureResult(
        shas=shas,
        X=X,
        ok=ok,
        reasons=reasons,
        computed=computed,
        reused=n_unique_done - computed,
        failed=int((~ok).sum()),
        seconds=time.perf_counter() - t0,
    )


def _featurize_concat(
    paths: Sequence[Path | str],
    feature_set: ConcatFeatures,
    cache_root: Path | str,
    limits: DecodeLimits,
    chunk: int,
    progress: Progress | None,
    t0: float,
) -> FeatureResult:
    """``cnn+hog`` from the parts' own caches, joined by the same function as
    ``ConcatFeatures.extract``, so nothing is computed or stored twice."""
    results = [
        featurize(paths, p, cache_root, limits=limits, chunk=chunk, progress=progress)
        for p in feature_set.parts
    ]
    ok = np.logical_and.reduce([r.ok for r in results])
    X = concat_normalized([r.X for r in results])
    X[~ok] = 0.0
    if X.shape[1] != feature_set.dim:
        raise AutotagError(
            f"{feature_set.name}: parts give dim {X.shape[1]}, expected {feature_set.dim}"
        )
    reasons: dict[int, str] = {}
    for r in results:
        for i, why in r.reasons.items():
            reasons.setdefault(i, why)
    return FeatureResult(
        shas=results[0].shas,
        X=X,
        ok=ok,
        reasons=reasons,
        computed=sum(r.computed for r in results),
        reused=sum(r.reused for r in results),
        failed=int((~ok).sum()),
        seconds=time.perf_counter() - t0,
    )
