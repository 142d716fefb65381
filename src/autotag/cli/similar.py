"""``autotag similar``, ``autotag duplicates`` and ``autotag sql-functions``: parse, call, print."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autotag.config import load_settings
from autotag.similarity.index import MODES

if TYPE_CHECKING:
    import numpy as np


def _tags_text(tags: list[dict[str, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in tags[:limit])
    return shown + (f", +{len(tags) - limit}" if len(tags) > limit else "")


@click.command()
@click.argument("target")
@click.option(
    "--min-score",
    type=float,
    default=None,
    help="Only photos whose dot product with the query is > this (e.g. 0.9).",
)
@click.option("--top", "-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--tag", default=None, help="Only photos currently tagged with TAG.")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="exact",
    show_default=True,
    help="exact float32 scan, fp16/int8 compressed scans, or ivf/hnsw approximate indexes.",
)
@click.option("--feature-set", default=None, help="Feature set (default: the feature_set setting).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def similar(
    target: str,
    min_score: float | None,
    top: int,
    tag: str | None,
    mode: str,
    feature_set: str | None,
    as_json: bool,
) -> None:
    """Photos most similar to PHOTO_ID (or a unique id prefix) or to an IMAGE_FILE."""
    from autotag.similarity.service import SimilarityService

    settings = load_settings()

    def featurize(path: Path) -> np.ndarray:
        """A file not in the system: the vector the Storm bolt's Tagger would store."""
        from autotag.pipeline.tag_step import load_tagger  # heavy (ONNX runtime): when needed

        return load_tagger(settings.tagging, settings.limits).tag_file(path).vector

    started = time.perf_counter()
    chosen = feature_set or settings.tagging.feature_set
    with SimilarityService(settings.services, mode, chosen, persist=True) as service:
        service.load()
        loaded = time.perf_counter()
        if Path(target).is_file():
            query = {"file": str(Path(target).resolve())}
            results = service.similar_to_file(target, featurize, top, min_score, tag)
        else:
            photo_id = service.resolve_photo_id(target)
            query = {"photo_id": photo_id}
            results = service.similar_to_photo(photo_id, top, min_score, tag)
        searched = len(service)
        active = service.index.active_mode if service.index is not None else mode
        resolved = service.feature_set
    done = time.perf_counter()
    if as_json:
        payload = {
            "query": query,
            "mode": active,
            "feature_set": resolved,
            "min_score": min_score,
            "tag": tag,
            "searched": searched,
            "load_ms": round((loaded - started) * 1000, 1),
            "search_ms": round((done - loaded) * 1000, 1),
            "results": results,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    what = query.get("photo_id") or query.get("file")
    click.echo(
        f"{len(results)} similar to {what} ({active}, {searched} photos, "
        f"load {(loaded - started) * 1000:.0f} ms, search {(done - loaded) * 1000:.0f} ms)"
    )
    for r in results:
        click.echo(f"{r['score']:.4f}  {r['photo_id']}  {_tags_text(r['tags'])}")


@click.command()
@click.option("--min-score", type=float, default=0.98, show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="exact", show_default=True)
@click.option("--feature-set", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def duplicates(min_score: float, mode: str, feature_set: str | None, as_json: bool) -> None:
    """Groups of near-identical photos (pairwise score > --min-score, joined transitively)."""
    from autotag.similarity.duplicates import find_duplicate_groups
    from autotag.similarity.service import SimilarityService

    settings = load_settings()
    chosen = feature_set or settings.tagging.feature_set
    with SimilarityService(settings.services, mode, chosen, persist=True) as service:
        service.load()
        assert service.index is not None
        groups = find_duplicate_groups(service.index, min_score)
        searched = len(service)
    if as_json:
        click.echo(
            json.dumps({"min_score": min_score, "searched": searched, "groups": groups}, indent=2)
        )
        return
    in_groups = sum(g["size"] for g in groups)
    click.echo(f"{len(groups)} groups, {in_groups} of {searched} photos (score > {min_score})")
    for g in groups:
        click.echo(f"{g['size']} photos, best {g['top_score']:.4f}: {' '.join(g['photo_ids'])}")


@click.command("sql-functions")
@click.option("--rebuild", is_flag=True, help="Recompile the C function even if cached.")
@click.option("--sql-only", is_flag=True, help="Install the slow plpgsql version only.")
def sql_functions(rebuild: bool, sql_only: bool) -> None:
    """Install dot_product(real[], real[]) in Postgres, for psql similarity queries."""
    from autotag.ops.sql_functions import install_sql_functions
    from autotag.storage import database

    settings = load_settings()
    with database.connect(settings.services, role="owner") as conn:
        language = install_sql_functions(conn, settings, prefer_c=not sql_only, rebuild=rebuild)
    kind = "C (SIMD)" if language == "c" else "plpgsql fallback (slow)"
    click.echo(f"dot_product(real[], real[]) installed: {kind}")
    click.echo(
        "try: SELECT photo_id FROM photo_vectors WHERE dot_product(feature, $1::real[]) > 0.9;"
    )


commands = [similar, duplicates, sql_functions]
