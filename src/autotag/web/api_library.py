"""The library by where and when, and the tags it learned, over HTTP.

GET  /api/timeline?offset=&limit=             photos newest taken first, with their date taken
GET  /api/places                              photos by country, and by city within it
GET  /api/learned                             learned tags: examples, precision/recall, when
POST /api/learned/<tag>/forget                forget a learned tag everywhere (``autotag learned
                                          forget``: its head, stored tags and labels)
GET  /api/learned/<tag>/doubtful?n=           the stored photos the tag is least sure about
GET  /api/learned/<tag>/questions             a new tag's unanswered questions before it is
                                          published (answer with /photos/<id>/labels)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from autotag.errors import ModelError
from autotag.learning import doubt, teach
from autotag.storage import learned, places, tag_search
from autotag.web.api_photos import State
from autotag.web.state import WebState

router = APIRouter(tags=["library"])
EXAMPLES = 6  # example photos shown per learned tag


@router.get("/api/timeline", summary="Photos newest taken first (those with a date taken)")
def timeline(
    state: State,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 48,
) -> dict[str, Any]:
    return timeline_page(state, offset, limit).as_dict()


def timeline_page(state: WebState, offset: int, limit: int) -> tag_search.SearchPage:
    with state.pool.connection() as conn:
        return tag_search.taken_page(
            conn, tag_search.when_params(None, None), limit=limit, offset=offset
        )


@router.get("/api/places", summary="Photos counted by country and by city")
def place_counts(state: State) -> list[dict[str, Any]]:
    with state.pool.connection() as conn:
        return places.counts(conn)


def learned_tags(state: WebState) -> list[dict[str, Any]]:
    """Every tag the learner looked at, with a few of its positive examples."""
    with state.pool.connection() as conn:
        found = learned.states(conn)
        out = []
        for tag, st in found.items():
            item = st.as_dict()
            item["questions"] = (
                learned.unanswered(conn, tag, st.questions) if st.status == "asking" else []
            )
            item["asked"] = len(st.questions) if st.status == "asking" else 0
            item["photos"] = learned.learned_tag_count(conn, tag)
            item["example_ids"] = [
                pid for pid, _t, positive, _at in learned.list_labels(conn, tag) if positive
            ][:EXAMPLES]
            out.append(item)
    return out


@router.get("/api/learned", summary="Learned tags: examples, estimated precision/recall, when")
def list_learned(state: State) -> list[dict[str, Any]]:
    return learned_tags(state)


def _forget(state: WebState, tag: str) -> dict[str, Any]:
    with state.pool.connection() as conn:
        if tag not in learned.states(conn):
            raise HTTPException(404, f"no learned tag {tag!r}")
        done = teach.forget(conn, state.settings.models_dir, tag)
    state.cache.pop("tag_counts", None)  # search reads the current tags again
    return done


@router.post("/api/learned/{tag}/forget", summary="Forget a learned tag everywhere")
async def forget_learned(tag: str, state: State) -> dict[str, Any]:
    return await run_in_threadpool(_forget, state, tag)


@router.get(
    "/api/learned/{tag}/questions",
    summary="A new learned tag's unanswered questions (answer with /photos/<id>/labels)",
)
def learned_questions(tag: str, state: State) -> dict[str, Any]:
    with state.pool.connection() as conn:
        st = learned.states(conn).get(tag)
        if st is None:
            raise HTTPException(404, f"no learned tag {tag!r}")
        asking = st.status == "asking"
        waiting = learned.unanswered(conn, tag, st.questions) if asking else []
    return {
        "tag": tag,
        "status": st.status,
        "phase": st.phase if asking else None,
        "asked": len(st.questions) if asking else 0,
        "photos": waiting,
        "message": st.message,
    }


def doubtful(state: WebState, tag: str, n: int) -> list[dict[str, Any]]:
    with state.pool.connection() as conn:
        try:
            return doubt.least_sure(conn, state.settings.models_dir, tag, n)
        except ModelError as exc:
            raise HTTPException(404, str(exc)) from None


@router.get(
    "/api/learned/{tag}/doubtful",
    summary="Stored photos the learned tag is least sure about (answer with /photos/<id>/labels)",
)
async def doubtful_photos(
    tag: str, state: State, n: Annotated[int, Query(ge=1, le=100)] = 12
) -> dict[str, Any]:
    found = await run_in_threadpool(doubtful, state, tag, n)
    return {"tag": tag, "photos": found}
