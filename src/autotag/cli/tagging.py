"""``autotag tag``: tag files here, without the cluster, with the autotag bolt's own code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from autotag.config import settings
from autotag.contract import TAGGED
from autotag.pipeline import intake
from autotag.pipeline.local_tagging import tag_paths


@click.command("tag")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option(
    "--jobs",
    "-j",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (each with `tagging_threads` threads; one per core is best).",
)
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
def tag(paths: tuple[Path, ...], as_json: bool, jobs: int, no_recursive: bool) -> None:
    """Tag image files and folders in this process, with the active model (no cluster,
    nothing stored). Exit status is 1 if any file could not be tagged."""
    from tqdm import tqdm

    s = settings()
    inputs = list(intake.iter_inputs(paths, recursive=not no_recursive))
    if not inputs:
        raise click.ClickException("no files found")
    files = [p for p, problem in inputs if problem is None]
    failed = 0
    for path, problem in inputs:
        if problem is not None:
            failed += 1
            _print(path, None, problem, as_json)
    bar = tqdm(total=len(files), unit="photo", file=sys.stderr, disable=None, leave=False)
    for path, result in tag_paths(files, s.tagging, s.limits, jobs=jobs):
        bar.update(1)
        if result.status != TAGGED:
            failed += 1
        bar.clear()
        _print(path, result, result.reason, as_json)
    bar.close()
    if failed:
        click.echo(f"autotag: {failed} of {len(inputs)} files could not be tagged", err=True)
        sys.exit(1)


def _print(path: Path, result, reason: str | None, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        payload: dict[str, Any] = {"path": str(path), "status": "failed", "reason": reason}
        if result is not None:
            payload.update(
                photo_id=result.photo_id or None,
                status=result.status,
                reason=result.reason,
                model_version=result.model_version,
                width=result.width,
                height=result.height,
                tags=[
                    {"tag": t.tag, "score": round(float(t.score), 4), "kind": t.kind, "via": t.via}
                    for t in result.tags
                ],
            )
        click.echo(json.dumps(payload))
    elif result is not None and result.status == TAGGED:
        tags = ", ".join(f"{t.tag} {t.score:.2f}" for t in result.tags) or "(no tag)"
        click.echo(f"{path}  {tags}")
    else:
        click.echo(f"{path}  FAILED: {reason}")


commands = [tag]
