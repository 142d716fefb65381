"""Tag corrections: a person's word on one (photo, tag), kept as training labels.

A negative label says a tag is wrong (removed on the photo page), a positive one that it
belongs (a missing tag added, or a model's tag confirmed). One row per pair; the latest
word replaces the earlier one. Exported as ``class,photo_id,label`` rows with TRUE/FALSE,
the file ``autotag train --labels`` reads (``learning.datasets.read_labels``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

MAX_TAG = 200
# A tag becomes a CSV class name and a directory-free label: no separators, no line breaks.
_BAD_TAG = re.compile(r"[\r\n,\x00]")


@dataclass(frozen=True)
class Label:
    photo_id: str
    tag: str
    positive: bool
    labeled_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "photo_id": self.photo_id,
            "tag": self.tag,
            "positive": self.positive,
            "labeled_at": self.labeled_at.isoformat(),
        }


def clean_tag(raw: str) -> str:
    """A tag as stored: trimmed, inner whitespace collapsed; ValueError with the reason."""
    tag = " ".join(str(raw).split())
    if not tag:
        raise ValueError("tag is empty")
    if len(tag) > MAX_TAG:
        raise ValueError(f"tag is longer than {MAX_TAG} characters")
    if _BAD_TAG.search(tag):
        raise ValueError("tag may not contain commas or line breaks")
    return tag


def set_label(conn: psycopg.Connection[Any], photo_id: str, tag: str, positive: bool) -> Label:
    """Record (or replace) the label; LookupError if the photo does not exist."""
    tag = clean_tag(tag)
    try:
        row = conn.execute(
            """
            INSERT INTO labels (photo_id, tag, positive) VALUES (%s, %s, %s)
            ON CONFLICT (photo_id, tag) DO UPDATE
                SET positive = EXCLUDED.positive, labeled_at = now()
            RETURNING photo_id, tag, positive, labeled_at
            """,
            (photo_id, tag, bool(positive)),
        ).fetchone()
    except psycopg.errors.ForeignKeyViolation:
        raise LookupError(f"no photo {photo_id}") from None
    assert row is not None
    return Label(*row)


def remove_label(conn: psycopg.Connection[Any], photo_id: str, tag: str) -> bool:
    """Forget a label (undo); True if there was one."""
    cur = conn.execute(
        "DELETE FROM labels WHERE photo_id = %s AND tag = %s", (photo_id, clean_tag(tag))
    )
    return cur.rowcount > 0


def photo_labels(conn: psycopg.Connection[Any], photo_id: str) -> list[Label]:
    """One photo's labels, newest first."""
    rows = conn.execute(
        "SELECT photo_id, tag, positive, labeled_at FROM labels WHERE photo_id = %s"
        " ORDER BY labeled_at DESC, tag",
        (photo_id,),
    ).fetchall()
    return [Label(*r) for r in rows]


def count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM labels").fetchone()
    return int(row[0]) if row else 0


def export_rows(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str, str]]:
    """(class, photo_id, TRUE|FALSE) for every label, class-major like LabelSet.write_csv."""
    with conn.cursor() as cur:
        cur.execute("SELECT tag, photo_id, positive FROM labels ORDER BY tag, photo_id")
        for tag, pid, positive in cur:
            yield tag, pid, "TRUE" if positive else "FALSE"


def export_csv(conn: psycopg.Connection[Any]) -> str:
    """Every label as the labels.csv text (with its header)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "photo_id", "label"])
    w.writerows(export_rows(conn))
    return buf.getvalue()
