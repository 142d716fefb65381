"""The ``autotag`` command as a user runs it, from the tests' virtualenv, and the wait for a
photo to be tagged by a given model: shared by the integration tests."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from autotag.config import Settings, child_env
from autotag.pipeline.intake import Intake
from autotag.storage import database, lookups


def autotag(
    s: Settings, *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``autotag ARGS`` with these settings (``env``: a whole environment instead);
    training commands take minutes, so only a hang reaches the timeout."""
    return subprocess.run(
        [str(s.venv / "bin" / "autotag"), *args],
        env=child_env(s) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def autotag_json(s: Settings, *args: str) -> object:
    """``autotag ARGS --json``, which must succeed: what it printed, parsed."""
    out = autotag(s, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def search_ids(s: Settings, *words: str, limit: int = 500) -> set[str]:
    """The photos `autotag search WORDS` finds (WORDS may carry its options); a video
    segment's hit has no photo id and is left out."""
    hits = autotag_json(s, "search", *words, "--limit", str(limit))
    assert isinstance(hits, list)
    return {h["photo_id"] for h in hits if "photo_id" in h}


def new_intake(s: Settings) -> Intake:
    """An Intake (not yet open) with these settings' sections, as `autotag upload` builds it."""
    return Intake(s.services, s.queue, s.limits, s.video, s.blob_dir)


def wait_model(s: Settings, photo_id: str, model: str, timeout: float = 180) -> lookups.PhotoInfo:
    """The photo's record once it is tagged by ``model``; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    with database.connect(s.services) as conn:
        while True:
            info = lookups.show(conn, photo_id)
            if info and info.status == "tagged" and info.model_version == model:
                return info
            if time.monotonic() > deadline:
                pytest.fail(f"photo not tagged with {model} in {timeout}s: {info}")
            time.sleep(1)
