"""``autotag labels``: tag corrections made on the web page, as training data."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import click

from autotag.config import settings
from autotag.storage import blobs, database
from autotag.storage import labels as label_store
from autotag.storage.blobs import BlobStore
from autotag.vision.decode import sniff_format

_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


@click.group()
def labels() -> None:
    """Tag corrections (labels) people made on the web page."""


@labels.command("export")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
def export_cmd(out: Path) -> None:
    """Write OUT/labels.csv and OUT/images/<photo_id>.<ext>, ready for
    `autotag train --images OUT/images --labels OUT/labels.csv`."""
    s = settings()
    store = BlobStore(s.blob_dir)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        rows = list(label_store.export_rows(conn))
    written, missing = 0, 0
    kept = []
    for pid in sorted({pid for _, pid, _ in rows}):
        try:
            data = store.read(pid, s.limits.max_file_bytes)
        except blobs.BlobError:
            missing += 1
            continue
        ext = _EXTENSIONS.get(sniff_format(data) or "", "")
        if not ext:
            missing += 1  # not an image: nothing to train on
            continue
        target = images / f"{pid}{ext}"
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            written += 1
        kept.append(pid)
    usable = set(kept)
    with (out / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["class", "photo_id", "label"])
        w.writerows(r for r in rows if r[1] in usable)
    n = sum(1 for r in rows if r[1] in usable)
    click.echo(
        f"{n} labels on {len(usable)} photos -> {out / 'labels.csv'} ({written} images written)"
    )
    if missing:
        click.echo(
            f"autotag: {missing} labeled photos skipped (file missing or not an image)", err=True
        )
    click.echo(f"train with: autotag train --images {images} --labels {out / 'labels.csv'}")


commands = [labels]
