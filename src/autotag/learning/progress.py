"""Progress of long learning steps, reported to a callback that the caller supplies.

Code below cli/ never prints. Hashing, featurizing, fitting and preparing datasets report each
advance as a ``Step`` and one-line notes as plain text; the CLI draws bars and prints lines,
tests and benchmarks pass ``None`` (nobody watching).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` items of one stage; ``done`` is 0 when the stage starts."""

    stage: str
    done: int
    total: int
    unit: str


Progress = Callable[[Step | str], None]


def note(progress: Progress | None, text: str) -> None:
    """Report a one-line note, if anyone is watching."""
    if progress is not None:
        progress(text)


class Stage:
    """Counts one stage's items and reports every advance (the start too)."""

    def __init__(self, progress: Progress | None, stage: str, total: int, unit: str) -> None:
        self.progress = progress
        self.stage = stage
        self.total = total
        self.unit = unit
        self.done = 0
        self._report()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(Step(self.stage, self.done, self.total, self.unit))
