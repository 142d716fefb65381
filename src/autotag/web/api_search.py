"""Finding photos over HTTP: by tag, by several tags, similar ones; counts and health.

GET /tags/<tag>?min_score=&limit=      typed words, as ``autotag search`` reads them; video
                                       segments carrying them under "segments"
GET /search?tag=a&tag=b&min_score=&order=score|newest|taken&offset=&limit=   every tag (AND)
GET /search?q=dogs+beach&min_score=&order=&offset=&limit=   one box of words (the web page's)
GET /autocomplete?q=                   current tags starting with q, most photos first
GET /tagcloud?top=                     the most common current tags
GET /similar/<id>?top=&min_score=&tag= photos by feature-vector dot product
GET /stats, GET /healthz

Typed words go through the active bundle's search vocabulary: plurals ("dogs"), synonyms
("automobile" finds car), concepts ("dog" finds the German shepherds), words inside longer tags
("retriever" finds golden retriever), several words = AND. ``storage.tag_search`` answers the
API, the Search page and ``autotag search`` alike.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import psycopg
import redis
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from autotag.errors import ServiceError
from autotag.storage import lookups, tag_search, videos
from autotag.vision.concepts import active_search_vocabulary
from autotag.web.api_photos import State, photo_id_of
from autotag.web.state import WebState

router = APIRouter(tags=["search"])
# The orders the one query knows (storage.tag_search.ORDERS): the CLI, API and page agree.
ORDER_PATTERN = "^(" + "|".join(tag_search.ORDERS) + ")$"

MAX_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# Tag counts are a GROUP BY over every current tag: recomputed at most this often.
TAGS_TTL_SECS = 30.0


def jsonable(value: Any) -> Any:
    """Similarity results (dataclasses, numpy scalars, tuples) as plain JSON values."""
    if hasattr(value, "as_dict"):
        return jsonable(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def vocabulary(state: WebState) -> dict[str, list[str]]:
    """The active bundle's search words, re-read at most every TAGS_TTL_SECS (a newly
    activated bundle's words then apply)."""
    at, vocab = state.cache.get("vocabulary", (0.0, {}))
    if time.monotonic() - at > TAGS_TTL_SECS:
        vocab = active_search_vocabulary(state.settings.models_dir)
        state.cache["vocabulary"] = (time.monotonic(), vocab)
    return vocab


@router.get("/tags/{tag}", summary="Photos matching typed words, best score first")
def by_tag(tag: str, state: State, min_score: float = 0.0, limit: Limit = 50) -> dict[str, Any]:
    page = find(state, tag_search.TagQuery(tag, min_score=min_score, limit=limit))
    with state.pool.connection() as conn:
        segments = videos.search_segments(conn, tag, min_score, limit)
    return {
        "tag": tag,
        "results": page.hits,
        "segments": [g.as_dict() for g in segments],
    }


@router.get("/search", summary="Photos matching every tag or typed word (AND), one page")
def search(
    state: State,
    tag: Annotated[list[str], Query(description="whole tags; repeat for AND")] = [],  # noqa: B006
    q: Annotated[str, Query(max_length=200, description="typed words, as the page's box")] = "",
    min_score: float = 0.0,
    order: Annotated[
        str, Query(pattern=ORDER_PATTERN, description="|".join(tag_search.ORDERS))
    ] = "score",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Limit = 48,
    taken_from: Annotated[
        date | None, Query(alias="from", description="taken on or after (YYYY-MM-DD)")
    ] = None,
    taken_to: Annotated[
        date | None, Query(alias="to", description="taken on or before (YYYY-MM-DD)")
    ] = None,
) -> dict[str, Any]:
    request = tag_search.TagQuery(
        q, tag, min_score, order, limit, offset, taken_from=taken_from, taken_to=taken_to
    )
    return {"q": q, **find(state, request).as_dict()}


def find(state: WebState, query: tag_search.TagQuery) -> tag_search.SearchPage:
    """``storage.tag_search`` with the active vocabulary and the cached current tags."""
    known = [t["tag"] for t in tag_counts(state)] if query.text.strip() else []
    with state.pool.connection() as conn:
        return tag_search.search(conn, query, vocabulary(state), known)


def tag_counts(state: WebState) -> list[dict[str, Any]]:
    """Every current tag with its photo count, most common first: one GROUP BY over the
    tags, cached for TAGS_TTL_SECS, serves both the tag cloud and autocomplete."""
    at, tags = state.cache.get("tag_counts", (0.0, []))
    if time.monotonic() - at > TAGS_TTL_SECS:
        with state.pool.connection() as conn:
            tags = lookups.tag_counts(conn)
        state.cache["tag_counts"] = (time.monotonic(), tags)
    return tags


@router.get("/autocomplete", summary="Current tags starting with q (or with a word of it)")
def autocomplete(
    state: State,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    return {"q": q, "suggestions": lookups.complete(tag_counts(state), q, limit)}


@router.get("/tagcloud", summary="The most common current tags with photo counts")
def tagcloud(state: State, top: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return {"tags": tag_counts(state)[:top]}


@router.get("/similar/{photo_id}", summary="Photos most similar to a photo (dot product)")
def similar(
    photo_id: str,
    state: State,
    top: Limit = 10,
    min_score: float | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    pid = photo_id_of(photo_id)
    with state.pool.connection() as conn:
        info = lookups.show(conn, pid)
    if info is None:
        raise HTTPException(404, f"no photo {pid}")
    if not info.has_vector:
        raise HTTPException(404, f"photo {pid} has no feature vector yet (status {info.status})")
    try:
        results = state.similarity().similar_to_photo(pid, top, min_score, tag or None)
    except (KeyError, LookupError, FileNotFoundError) as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from None
    return {"photo_id": pid, "results": jsonable(results)}


@router.get("/stats", summary="Counts by status, tags per photo, top tags, models, vectors")
def stats(state: State) -> dict[str, Any]:
    with state.pool.connection() as conn:
        return lookups.stats(conn)


@router.get("/healthz", summary="Postgres and Redis answer")
def healthz(state: State) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with state.pool.connection() as conn:
            conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except (ServiceError, HTTPException, psycopg.Error) as exc:
        checks["postgres"] = str(getattr(exc, "detail", exc))
    try:
        with state.stream.errors():
            state.stream.redis.ping()
        checks["redis"] = "ok"
    except (ServiceError, redis.RedisError) as exc:
        checks["redis"] = str(exc)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)
