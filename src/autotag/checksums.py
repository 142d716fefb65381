"""sha256 of bytes and files: photo ids, bundle and model file checksums.

One implementation for every layer, because a photo id, a bundle manifest's ``files`` entry
and the ONNX export's provenance must all hash the same way.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def bytes_sha256(data: bytes) -> str:
    """sha256 hex of a byte string."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """sha256 hex of a file, read in chunks so a huge file never fills memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
