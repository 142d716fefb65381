"""The library's pages beside Search: the timeline on the landing page, Trash, People,
Places and Learned tags (server-rendered; their buttons call the JSON API through
``static/library.js``, so the page and the API cannot disagree).

    /ui/timeline      the landing page's next photos, newest taken first, by month
    /deleted          Trash: what is in the trash, restore, empty (GET /trash is its JSON)
    /people           a face per person, counts, unnamed groups; name, merge
    /people/<id>      one person's faces; "not this person" removes a wrong one
    /places           photos by country and city, each linked to its search
    /learned          learned tags with examples, precision/recall, when, forget; the photos
                      each is least sure about, for a yes/no answer
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from autotag.storage import deletion, places
from autotag.storage import people as people_store
from autotag.web import api_library
from autotag.web.api_photos import State
from autotag.web.state import WebState

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
PER_PAGE = 48
DOUBTFUL = 6  # photos offered per learned tag for a yes/no answer


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


# -- the timeline (the landing page with no query) -------------------------------------------


def month_of(taken_local: str | None) -> tuple[str, str]:
    """("2021-07", "July 2021") of an ISO local time; ("", "no date") without one."""
    if not taken_local:
        return "", "no date"
    when = datetime.fromisoformat(taken_local)
    return when.strftime("%Y-%m"), when.strftime("%B %Y")


def timeline_context(state: WebState, offset: int, last_month: str = "") -> dict[str, Any]:
    """A page of the timeline in month groups; a group continuing the previous page's last
    month gets no second heading."""
    page = api_library.timeline_page(state, offset, PER_PAGE)
    groups: list[dict[str, Any]] = []
    for hit in page.hits:
        key, label = month_of(hit.get("taken_local"))
        if not groups or groups[-1]["key"] != key:
            groups.append({"key": key, "label": label, "hits": [], "heading": key != last_month})
        groups[-1]["hits"].append(hit)
    more = None
    if page.more:
        last = groups[-1]["key"] if groups else last_month
        more = "/ui/timeline?" + urlencode({"offset": offset + len(page.hits), "last": last})
    return {"timeline": page, "groups": groups, "timeline_more": more}


@router.get("/ui/timeline", response_class=HTMLResponse)
def timeline_fragment(
    request: Request,
    state: State,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    last: Annotated[str, Query(max_length=7)] = "",
) -> HTMLResponse:
    return _page(request, "_timeline.html", **timeline_context(state, offset, last))


# -- trash -----------------------------------------------------------------------------------


@router.get("/deleted", response_class=HTMLResponse)
def trash_page(request: Request, state: State) -> HTMLResponse:
    with state.pool.connection() as conn:
        items = deletion.list_trash(conn, state.settings.trash.trash_days)
    return _page(request, "trash.html", items=items, days=state.settings.trash.trash_days)


# -- people ----------------------------------------------------------------------------------


@router.get("/people", response_class=HTMLResponse)
def people_page(request: Request, state: State) -> HTMLResponse:
    with state.pool.connection() as conn:
        everyone = people_store.list_people(conn)
    named = [p for p in everyone if p["name"]]
    unnamed = [p for p in everyone if not p["name"]]
    return _page(request, "people.html", named=named, unnamed=unnamed, everyone=everyone)


@router.get("/people/{person_id}", response_class=HTMLResponse)
def person_page(request: Request, person_id: int, state: State) -> HTMLResponse:
    with state.pool.connection() as conn:
        found = people_store.person(conn, person_id)
        others = [
            p
            for p in people_store.list_people(conn)
            if found and p["person_id"] != found["person_id"]
        ]
    if found is None:
        raise HTTPException(404, f"no person {person_id}")
    return _page(request, "person.html", person=found, others=others)


# -- places ----------------------------------------------------------------------------------


@router.get("/places", response_class=HTMLResponse)
def places_page(request: Request, state: State) -> HTMLResponse:
    with state.pool.connection() as conn:
        found = places.counts(conn)
    return _page(request, "places.html", countries=found)


# -- learned tags ----------------------------------------------------------------------------


@router.get("/learned", response_class=HTMLResponse)
def learned_page(request: Request, state: State) -> HTMLResponse:
    tags = api_library.learned_tags(state)
    for t in tags:
        t["doubtful"], t["doubt_note"] = [], None
        if t["status"] == "learned":
            try:
                t["doubtful"] = api_library.doubtful(state, t["tag"], DOUBTFUL)
            except HTTPException as exc:
                t["doubt_note"] = str(exc.detail)
    return _page(request, "learned.html", tags=tags)
