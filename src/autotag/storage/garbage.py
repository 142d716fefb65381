"""What nothing refers to any more: blobs of photos whose rows were deleted, and temp files
of uploads that died half-way. ``autotag gc`` finds and removes them.

Both are judged only once they are older than a grace period: an upload writes its blob
before its ``photos`` row, and a running upload owns its temp file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from autotag.storage import registry
from autotag.storage.blobs import BlobStore

BATCH = 1000


@dataclass
class Garbage:
    """Blobs without a photo row and stale temp files, with the bytes they hold."""

    orphan_blobs: list[str] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    bytes: int = 0
    removed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "orphan_blobs": self.orphan_blobs,
            "temp_files": [str(p) for p in self.temp_files],
            "bytes": self.bytes,
            "removed": self.removed,
        }


def find(blobs: BlobStore, conn: psycopg.Connection[Any], min_age_secs: float) -> Garbage:
    """Blobs older than min_age_secs with no ``photos`` row, and temp files older than that."""
    out = Garbage()
    batch: list[str] = []

    def settle() -> None:
        known = registry.known_ids(conn, batch)
        for pid in batch:
            if pid not in known and blobs.age_secs(pid) >= min_age_secs:
                out.orphan_blobs.append(pid)
                out.bytes += blobs.path_for(pid).lstat().st_size
        batch.clear()

    for pid in blobs.ids():
        batch.append(pid)
        if len(batch) >= BATCH:
            settle()
    if batch:
        settle()
    out.temp_files = blobs.stale_temp_files(min_age_secs)
    out.bytes += sum(p.lstat().st_size for p in out.temp_files)
    return out


def remove(blobs: BlobStore, conn: psycopg.Connection[Any], garbage: Garbage) -> Garbage:
    """Delete what ``find`` found, re-checking each blob has no row now (an upload may have
    registered it since); returns what was removed."""
    done = Garbage(removed=True)
    for start in range(0, len(garbage.orphan_blobs), BATCH):
        chunk = garbage.orphan_blobs[start : start + BATCH]
        known = registry.known_ids(conn, chunk)
        for pid in chunk:
            if pid not in known and blobs.exists(pid):
                done.bytes += blobs.remove(pid)
                done.orphan_blobs.append(pid)
    for path in garbage.temp_files:
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        done.temp_files.append(path)
        done.bytes += size
    return done
