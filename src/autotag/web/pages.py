"""The HTML pages (Jinja2, server-rendered) and the fragments htmx swaps into them.

    /                 Search: tag box with autocomplete, several tags = AND, min score, grid
    /photo/<id>       the image, its tags, corrections, similar photos
    /upload           drag and drop of photos and videos with per-file progress; live feed
    /status           services, topologies (activate/deactivate), queue, photos/min, failures
    /topology/<name>  per spout and bolt figures over 10 min / 3 h / all time
    /models           bundles with metrics; activate one

Fragments live under ``/ui/``; their POSTs take JSON (the token guard allows no forms).
The data comes from the same functions as the JSON API, so the two cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from autotag.errors import AutotagError
from autotag.ops import component_stats
from autotag.pipeline.requeue import requeue
from autotag.storage import labels, lookups
from autotag.storage import people as people_store
from autotag.storage.tag_search import TagQuery
from autotag.web import api_ops, api_search, api_storm, pages_library
from autotag.web.api_photos import State, photo_id_of

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
PER_PAGE = 48


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "malformed JSON: expected an object")
    return body


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


# -- search ------------------------------------------------------------------------------------

# The search's parameters, one definition for the page and its "more" fragment (the page's
# more_url is read by the fragment, so both must accept the same values).
Tags = Annotated[list[str], Query()]
Words = Annotated[str, Query(max_length=200)]
MinScore = Annotated[float, Query(ge=0.0, le=1.0)]
Order = Annotated[str, Query(pattern=api_search.ORDER_PATTERN)]


def _search_context(
    state: State, tags: list[str], q: str, min_score: float, order: str, offset: int
) -> dict[str, Any]:
    """The API's search (``api_search.find``): the same words find the same photos on the
    page, over HTTP and on the command line."""
    request = TagQuery(q, tags, min_score, order, PER_PAGE, offset)
    page = api_search.find(state, request)
    query = [("tag", t) for t in tags] + [("q", q), ("min_score", min_score), ("order", order)]
    more = urlencode([*query, ("offset", offset + len(page.hits))])
    return {"page": page, "more_url": f"/ui/results?{more}" if page.more else None}


@router.get("/", response_class=HTMLResponse)
def search_page(
    request: Request,
    state: State,
    tag: Tags = [],  # noqa: B006
    q: Words = "",
    min_score: MinScore = 0.0,
    order: Order = "score",
) -> HTMLResponse:
    tags = [t.strip() for t in tag if t.strip()]
    searched = bool(tags or q.strip())
    if searched:
        context = _search_context(state, tags, q, min_score, order, 0)
    else:  # the landing page: the newest photos by date taken, by month
        context = pages_library.timeline_context(state, 0)
    return _page(
        request,
        "search.html",
        tags=tags,
        q=q,
        searched=searched,
        min_score=min_score,
        order=order,
        cloud=api_search.tag_counts(state)[:50],
        **context,
    )


@router.get("/ui/results", response_class=HTMLResponse)
def results_fragment(
    request: Request,
    state: State,
    tag: Tags = [],  # noqa: B006
    q: Words = "",
    min_score: MinScore = 0.0,
    order: Order = "score",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    context = _search_context(state, tag, q, min_score, order, offset)
    return _page(request, "_results.html", **context)


@router.get("/ui/suggest", response_class=HTMLResponse)
def suggest_fragment(request: Request, state: State, q: Words = "") -> HTMLResponse:
    """``<option>``s for the search box's datalist (the box sends its value as ``q``)."""
    suggestions = lookups.complete(api_search.tag_counts(state), q, 10)
    return _page(request, "_suggest.html", suggestions=suggestions)


# -- one photo ---------------------------------------------------------------------------------


def _photo_context(state: State, pid: str) -> dict[str, Any]:
    with state.pool.connection() as conn:
        info = lookups.show(conn, pid)
        if info is None:
            raise HTTPException(404, f"no photo {pid}")
        marks = {lab.tag.lower(): lab for lab in labels.photo_labels(conn, pid)}
        faces = people_store.photo_faces(conn, pid)
    model_tags = {t.lower() for t, _ in info.tags}
    added = [lab for key, lab in marks.items() if lab.positive and key not in model_tags]
    return {"info": info, "marks": marks, "added": added, "photo_id": pid, "faces": faces}


@router.get("/photo/{photo_id}", response_class=HTMLResponse)
def photo_page(request: Request, photo_id: str, state: State) -> HTMLResponse:
    pid = photo_id_of(photo_id)
    context = _photo_context(state, pid)
    similar: list[dict[str, Any]] = []
    similar_note = None
    if context["info"].has_vector:
        try:
            similar = state.similarity().similar_to_photo(pid, 12)
        except (AutotagError, LookupError) as exc:
            similar_note = str(exc)
    else:
        similar_note = f"no feature vector yet (status {context['info'].status})"
    return _page(
        request,
        "photo.html",
        similar=api_search.jsonable(similar),
        similar_note=similar_note,
        **context,
    )


@router.post("/ui/photo/{photo_id}/label", response_class=HTMLResponse)
async def label_fragment(request: Request, photo_id: str, state: State) -> HTMLResponse:
    """Set (``positive`` given) or forget (``forget`` true) a label; the tags panel again."""
    pid = photo_id_of(photo_id)
    body = await _json_body(request)
    tag = str(body.get("tag", ""))

    def change() -> dict[str, Any]:
        with state.pool.connection() as conn:
            if _truthy(body.get("forget")):
                labels.remove_label(conn, pid, tag)
            else:
                labels.set_label(conn, pid, tag, _truthy(body.get("positive")))
        return _photo_context(state, pid)

    try:
        context = await run_in_threadpool(change)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, f"tag: {exc}") from None
    return _page(request, "_tags.html", **context)


# -- upload ------------------------------------------------------------------------------------


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, state: State) -> HTMLResponse:
    return _page(
        request,
        "upload.html",
        max_bytes=state.settings.limits.max_file_bytes,
        max_video_bytes=state.settings.video.max_video_bytes,
    )


# -- status ------------------------------------------------------------------------------------


def _chart(rate: list[dict[str, Any]], width: int = 480, height: int = 120) -> dict[str, Any]:
    """Bars for photos tagged per minute, scaled to the busiest minute."""
    peak = max((r["photos"] for r in rate), default=0) or 1
    bar = width / max(len(rate), 1)
    bars = [
        {
            "x": round(i * bar, 1),
            "w": round(bar * 0.8, 1),
            "h": round(r["photos"] / peak * (height - 20), 1),
            "label": f"{r['minute'][11:16]}: {r['photos']} photos ({r['photos'] / 60:.2f}/s)",
        }
        for i, r in enumerate(rate)
    ]
    last = rate[-2]["photos"] / 60 if len(rate) > 1 else 0.0  # the last whole minute
    return {"bars": bars, "width": width, "height": height, "peak": peak, "per_sec": last}


def _status_context(state: State) -> dict[str, Any]:
    status = api_ops.status(state, 15)
    return {"status": status, "chart": _chart(status["tagged_per_minute"])}


@router.get("/status", response_class=HTMLResponse)
def status_page(request: Request, state: State) -> HTMLResponse:
    return _page(request, "status.html", **_status_context(state))


@router.get("/ui/status", response_class=HTMLResponse)
def status_fragment(request: Request, state: State) -> HTMLResponse:
    return _page(request, "_status.html", **_status_context(state))


@router.post("/ui/topologies/{name}/{action}", response_class=HTMLResponse)
def topology_action_fragment(
    request: Request, name: str, action: str, state: State
) -> HTMLResponse:
    if action == "activate":
        api_ops.topology_action(name, "activate", state)
    elif action == "deactivate":
        api_ops.topology_action(name, "deactivate", state)
    else:
        raise HTTPException(404, f"no action {action!r}")
    return _page(request, "_status.html", **_status_context(state))


@router.post("/ui/retry", response_class=HTMLResponse)
async def retry_fragment(request: Request, state: State) -> HTMLResponse:
    """Re-queue one failed photo (``photo_id``) or all of them; the status panel again."""
    body = await _json_body(request)
    ids = [photo_id_of(str(body["photo_id"]))] if body.get("photo_id") else None
    s = state.settings
    await run_in_threadpool(requeue, s.services, s.queue, s.blob_dir, ids, statuses=("failed",))
    context = await run_in_threadpool(_status_context, state)
    return _page(request, "_status.html", **context)


# -- topology ----------------------------------------------------------------------------------


@router.get("/topology", response_class=HTMLResponse)
def topologies_page(request: Request, state: State) -> HTMLResponse:
    return _page(request, "topologies.html", **api_ops.topologies(state))


@router.get("/topology/{name}", response_class=HTMLResponse)
def topology_page(request: Request, name: str, state: State, window: str = "600") -> HTMLResponse:
    try:
        window = component_stats.check_window(window)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    info, structure = api_storm.topology_info(state, name)
    page = component_stats.topology_page(info, window, structure)
    return _page(request, "topology.html", topo=page, windows=component_stats.WINDOWS)


# -- models ------------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, state: State) -> HTMLResponse:
    return _page(request, "models.html", **api_ops.models(state))


@router.post("/ui/models/{bundle_id}/activate", response_class=HTMLResponse)
def activate_model_fragment(request: Request, bundle_id: str, state: State) -> HTMLResponse:
    api_ops.activate_model(bundle_id, state)
    return _page(request, "_models.html", **api_ops.models(state))
