"""The result contract (autotag.contract): one definition of a tag, the kinds, the statuses
and the result a bolt emits, used by every component and by storage."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from autotag.contract import (
    FAILED,
    KINDS,
    RESULT_FIELDS,
    TAGGED,
    PhotoResult,
    Tag,
    stored,
)
from autotag.storage.database import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_kinds_are_the_tags_tables_check() -> None:
    """The Python kinds and the migrations' CHECK on tags.kind come from one list: the last
    migration that sets the CHECK allows exactly KINDS."""
    allowed = None
    check = re.compile(r"CHECK\s*\(\s*kind\s+IN\s*\(([^)]*)\)\s*\)", re.I)
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for statement in path.read_text().split(";"):
            if re.match(r"\s*(--[^\n]*\n\s*)*ALTER TABLE tags\b", statement, re.I):
                for m in check.finditer(statement):
                    allowed = tuple(re.findall(r"'([^']*)'", m.group(1)))
    assert allowed == KINDS


def test_a_result_round_trips_through_its_tuple() -> None:
    vector = np.linspace(-1, 1, 1280, dtype=np.float32)

    @dataclass
    class Outcome:  # what a tagger returns (vision.tagger.TagResult), duck-typed
        tags: list[Tag]
        vector: np.ndarray
        model_version: str
        feature_set: str
        width: int
        height: int
        faces: list[object]

    out = Outcome(
        [Tag("dog", 0.9, "concept", "pug"), Tag("pug", 0.5)], vector, "m1", "cnn", 4, 3, []
    )
    r = PhotoResult.tagged("a" * 64, out)
    values = r.to_tuple()
    assert len(values) == len(RESULT_FIELDS) == len(PhotoResult.field_names())
    back = PhotoResult.from_tuple(values)
    assert back.tags == r.tags and back.status == TAGGED and (back.width, back.height) == (4, 3)
    assert np.array_equal(np.asarray(back.vector), vector)
    assert back.to_tuple() == values
    # a [tag, score] pair (an older bolt) is a leaf; a shorter tuple gets the defaults
    old = PhotoResult.from_tuple(["b" * 64, TAGGED, "m0", "cnn", [["tabby", 0.4]]])
    assert old.tags == [Tag("tabby", 0.4, "leaf", None)] and old.attempts == 0
    failed = PhotoResult.from_tuple(PhotoResult.failed("c" * 64, "corrupt", 3).to_tuple())
    assert (failed.status, failed.reason, failed.attempts) == (FAILED, "corrupt", 3)


def test_bad_kind_status_or_length_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        PhotoResult("a", TAGGED, "m", "cnn", [["x", 0.5, "guess", None]])
    with pytest.raises(ValueError, match="status"):
        PhotoResult("a", "done")
    with pytest.raises(ValueError, match="fields"):
        PhotoResult.from_tuple(["a", TAGGED, *([None] * len(RESULT_FIELDS))])


@dataclass
class NotedResult(PhotoResult):
    """A result with one more field, as faces or places will add: one declaration."""

    note: str | None = stored("text", default=None)


def test_a_new_field_is_one_declaration() -> None:
    r = NotedResult("a" * 64, TAGGED, "m", "cnn", [("dog", 0.5)], note="hello")
    assert NotedResult.field_names() == [*RESULT_FIELDS, "note"]
    assert NotedResult.from_tuple(r.to_tuple()) == r
    assert ("note", "note") in [(f, c.name) for f, c in NotedResult.columns()]
    # a tuple from a bolt that does not know the field yet
    assert NotedResult.from_tuple(PhotoResult.failed("b" * 64, "x").to_tuple()).note is None


@pytest.mark.parametrize(
    "modules",
    [
        ["spouts.photos", "spouts.videos"],
        ["bolts.dbwriter", "bolts.video_writer"],
        ["autotag.contract", "autotag.storage.writer"],
    ],
)
def test_spout_and_writer_processes_load_no_vision(modules: list[str]) -> None:
    """The spout and DB-writer processes never decode an image: importing their modules in
    a fresh interpreter loads neither OpenCV nor ONNX Runtime nor the vision package."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(' '.join(m for m in ('cv2', 'onnxruntime', 'autotag.vision') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""
