"""Files inside a Qt resource bundle (``.rcc``), read without Qt.

Debian's ``gcompris-qt-data`` ships its photos (fish, tools, animals, labelled by their file
and folder names) inside ``.rcc`` files; the concept development set reads them from there.
Format (Qt's rcc, versions 1-3): a header, a tree of fixed-size nodes, a names table and a
data table; a file's bytes may be zlib-compressed (Qt's 4-byte length prefix first).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from autotag.errors import AutotagError

_COMPRESSED, _DIRECTORY, _ZSTD = 1, 2, 4


class QtResources:
    """One ``.rcc`` file: ``read("gcompris/src/…/fish1.webp")`` gives a member's bytes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._data = self.path.read_bytes()
        d = self._data
        if d[:4] != b"qres" or len(d) < 20:
            raise AutotagError(f"{self.path} is not a Qt resource file")
        version, self._tree, self._blobs, self._names = struct.unpack(">IIII", d[4:20])
        if not 1 <= version <= 3:
            raise AutotagError(f"{self.path}: unsupported rcc version {version}")
        self._node = 14 if version == 1 else 22

    def _name(self, offset: int) -> str:
        at = self._names + offset
        (n,) = struct.unpack(">H", self._data[at : at + 2])
        return self._data[at + 6 : at + 6 + 2 * n].decode("utf-16-be")

    def read(self, member: str) -> bytes:
        node = 0
        for part in member.strip("/").split("/"):
            at = self._tree + node * self._node
            (flags,) = struct.unpack(">H", self._data[at + 4 : at + 6])
            if not flags & _DIRECTORY:
                raise AutotagError(f"{self.path}: no {member}")
            count, first = struct.unpack(">II", self._data[at + 6 : at + 14])
            found = [
                i
                for i in range(first, first + count)
                if self._name(struct.unpack(">I", self._node_bytes(i)[:4])[0]) == part
            ]
            if not found:
                raise AutotagError(f"{self.path}: no {member}")
            node = found[0]
        raw = self._node_bytes(node)
        (flags,) = struct.unpack(">H", raw[4:6])
        if flags & _DIRECTORY:
            raise AutotagError(f"{self.path}: {member} is a folder")
        (offset,) = struct.unpack(">I", raw[10:14])
        at = self._blobs + offset
        (size,) = struct.unpack(">I", self._data[at : at + 4])
        blob = self._data[at + 4 : at + 4 + size]
        if flags & _ZSTD:
            raise AutotagError(f"{self.path}: {member} is zstd-compressed (not supported)")
        return zlib.decompress(blob[4:]) if flags & _COMPRESSED else blob

    def _node_bytes(self, index: int) -> bytes:
        at = self._tree + index * self._node
        return self._data[at : at + self._node]
