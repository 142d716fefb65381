"""Storm's multilang input, readable line by line, that can tell whether more is waiting.

A batching bolt should write its batch when the batch is full *or* when nothing more is
waiting to be read — never sit on a partial batch for a timer. Python's text wrapper around
stdin hides what it has already buffered, so this reader keeps its own buffer over the raw
file descriptor: input is waiting when a complete line is buffered or the pipe is readable.
"""

from __future__ import annotations

import os
import select


class StormInput:
    """A ``readline()`` source for pystorm's serializer, over a raw file descriptor."""

    def __init__(self, fd: int = 0, chunk: int = 1 << 16) -> None:
        self.fd = fd
        self.chunk = chunk
        self.buffer = bytearray()
        self.eof = False

    def readline(self) -> str:
        """The next line with its newline; '' at end of input (Storm went away)."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line.decode("utf-8")
            if self.eof:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line.decode("utf-8")
            data = os.read(self.fd, self.chunk)
            if not data:
                self.eof = True
            self.buffer += data

    def waiting(self, timeout: float = 0.0) -> bool:
        """True when another message has arrived (buffered, or readable) within ``timeout``
        seconds."""
        if b"\n" in self.buffer or self.eof:
            return True
        readable, _, _ = select.select([self.fd], [], [], timeout)
        return bool(readable)
