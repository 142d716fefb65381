"""A component's own account of its time: busy in ``process()``, waiting between tuples.

Storm's metrics say how long an execute took and how full a queue was; they do not say how
long a tagging process sat idle with nothing to do. The autotag and DB-writer bolts keep
this meter and write it, about once a second, to ``<run_dir>/stats/<name>.json`` (replaced
atomically), so a benchmark can read every executor's busy and waiting time over a run and
add them up against the wall clock (``bench/steady_state.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

# A wait longer than this is counted apart: it is more than the framework's own hand-over.
LONG_WAIT_SECS = 0.005


class BusyMeter:
    """Counts tuples, busy seconds, waiting seconds (and the long waits) of one executor."""

    def __init__(
        self,
        path: Path | None,
        every_secs: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.clock = clock
        self.every_secs = every_secs
        self.tuples = 0
        self.busy_secs = 0.0
        self.wait_secs = 0.0
        self.long_waits = 0
        self.long_wait_secs = 0.0
        self._began = 0.0
        self._ended: float | None = None
        self._written = clock()

    def begin(self) -> None:
        now = self.clock()
        if self._ended is not None:
            waited = now - self._ended
            self.wait_secs += waited
            if waited > LONG_WAIT_SECS:
                self.long_waits += 1
                self.long_wait_secs += waited
        self._began = now
        if now - self._written >= self.every_secs:
            self.write()  # after an idle spell: the wait is on record before the work starts

    def end(self, tuples: int = 1) -> None:
        now = self.clock()
        self.busy_secs += now - self._began
        self.tuples += tuples
        self._ended = now
        if now - self._written >= self.every_secs:
            self.write()

    def as_dict(self) -> dict[str, float | int]:
        return {
            "pid": os.getpid(),
            "tuples": self.tuples,
            "busy_secs": round(self.busy_secs, 6),
            "wait_secs": round(self.wait_secs, 6),
            "long_waits": self.long_waits,
            "long_wait_secs": round(self.long_wait_secs, 6),
            "written_at": time.time(),
        }

    def write(self) -> None:
        """Replace the stats file (a failure to write only loses a sample)."""
        self._written = self.clock()
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.as_dict()))
            os.replace(tmp, self.path)
        except OSError:
            pass


def meter_path(run_dir: Path, component: str, task_id: object) -> Path:
    """Where an executor's meter is written: ``<run_dir>/stats/<component>-<task>.json``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{component}-{task_id}")
    return run_dir / "stats" / f"{safe}.json"


def read_meters(run_dir: Path) -> dict[str, dict[str, float]]:
    """Every executor's last written meter, by file name (component-task)."""
    out: dict[str, dict[str, float]] = {}
    folder = run_dir / "stats"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out
