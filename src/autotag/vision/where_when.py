"""A photo's metadata as searchable tags: places (kind ``place``), time words (``time``)
and the owner's own keywords (``keyword``).

Time words come from the local wall-clock time the photo was taken: the year, the month's
name, the season (by hemisphere: July in Sydney is winter; a photo without a position is
taken to be northern, where nine in ten people live) and the time of day. A photo without
a date gets no time tag, one without a position no place tag: nothing is made up from the
upload time.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

from autotag.contract import Tag
from autotag.vision.metadata import PhotoMetadata, read_metadata
from autotag.vision.places import Geocoder, Place, country_names, geocoder, utc_offset
from autotag.vision.video_metadata import in_zone, read_video_metadata

# The result fields (contract.PhotoResult) a photo's metadata fills.
FIELDS = (
    "taken_local", "taken_at", "taken_source", "latitude", "longitude", "altitude", "place",
    "camera", "lens", "keywords", "title", "description",
)  # fmt: skip

MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_NORTH_SEASONS = ("winter", "spring", "summer", "autumn")


def season(month: int, latitude: float | None) -> str:
    """Meteorological season (Dec-Feb winter, ...), flipped south of the equator."""
    i = (month % 12) // 3  # 0 winter, 1 spring, 2 summer, 3 autumn
    if latitude is not None and latitude < 0:
        i = (i + 2) % 4
    return _NORTH_SEASONS[i]


def time_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 21:
        return "evening"
    return "night"


def time_tags(local: datetime | None, latitude: float | None) -> list[Tag]:
    if local is None:
        return []
    s = season(local.month, latitude)
    tags = [
        Tag(str(local.year), 1.0, "time"),
        Tag(MONTHS[local.month - 1], 1.0, "time"),
        Tag(s, 1.0, "time"),
        Tag(time_of_day(local.hour), 1.0, "time"),
    ]
    if s == "autumn":
        tags.append(Tag("fall", 1.0, "time", "autumn"))
    return tags


def place_tags(place: Place) -> list[Tag]:
    """City (and its name without " City"), the nearest place when it differs (a district),
    region, and every common name of the country (``via`` the usual one)."""
    tags: list[Tag] = []
    if place.city:
        city = place.city.lower()
        tags.append(Tag(city, 1.0, "place"))
        if city.endswith(" city") and len(city) > 5:
            tags.append(Tag(city[:-5], 1.0, "place", city))
    if place.nearest and place.city and place.nearest.lower() != place.city.lower():
        tags.append(Tag(place.nearest.lower(), 1.0, "place", place.city.lower()))
    if place.region:
        tags.append(Tag(place.region.lower(), 1.0, "place"))
    if place.country_code:
        names = country_names(place.country_code, place.country)
        if names:
            tags.append(Tag(names[0], 1.0, "place"))
            tags += [Tag(n, 1.0, "place", names[0]) for n in names[1:]]
    # Names as people type them: "reykjavik" finds "reykjavík", "sao paulo" "são paulo".
    tags += [Tag(_ascii(t.tag), 1.0, "place", t.tag) for t in tags if _ascii(t.tag) != t.tag]
    best: dict[str, Tag] = {}
    for t in tags:
        best.setdefault(t.tag, t)
    return list(best.values())


def _ascii(name: str) -> str:
    """The name without its accents (letters with no ASCII base are kept)."""
    decomposed = unicodedata.normalize("NFKD", name.replace("ß", "ss"))
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def keyword_tags(meta: PhotoMetadata) -> list[Tag]:
    return [Tag(" ".join(k.lower().split()), 1.0, "keyword") for k in meta.keywords]


def resolve(meta: PhotoMetadata, geo: Geocoder | None) -> tuple[PhotoMetadata, Place | None]:
    """The metadata with its time zone found from the position when the file gave none,
    and the position's place (None without a position or a geocoder)."""
    if geo is None or meta.latitude is None or meta.longitude is None:
        return meta, None
    place = geo.locate(meta.latitude, meta.longitude)
    if meta.taken_local is not None and meta.taken_offset is None and place.time_zone:
        offset = utc_offset(place.time_zone, meta.taken_local)
        if offset is not None:
            meta = meta.with_zone(place.time_zone, offset)
    return meta, place


def metadata_tags(meta: PhotoMetadata, place: Place | None) -> list[Tag]:
    """Every tag the metadata gives: places, time words, keywords (first of a name wins)."""
    tags = (place_tags(place) if place else []) + time_tags(meta.taken_local, meta.latitude)
    tags += keyword_tags(meta)
    best: dict[str, Tag] = {}
    for t in tags:
        if t.tag:
            best.setdefault(t.tag, t)
    return list(best.values())


def result_fields(meta: PhotoMetadata, place: Place | None) -> dict[str, Any]:
    """The contract's fields for this metadata (JSON-safe: times as ISO text)."""
    taken_at = meta.taken_at
    return {
        "taken_local": meta.taken_local.isoformat() if meta.taken_local else None,
        "taken_at": taken_at.isoformat() if taken_at else None,
        "taken_source": meta.taken_source,
        "latitude": meta.latitude,
        "longitude": meta.longitude,
        "altitude": meta.altitude,
        "place": place.label() if place else None,
        "camera": meta.camera,
        "lens": meta.lens,
        "keywords": "; ".join(meta.keywords) or None,
        "title": meta.title,
        "description": meta.description,
    }


def describe(data: bytes, fmt: str, *, places: bool = True) -> tuple[dict[str, Any], list[Tag]]:
    """A photo's bytes (of format ``fmt``) → its metadata's result fields and tags. Never
    raises for a bad file (what cannot be read is left out); the geocoder is loaded on the
    first photo with a position."""
    meta = read_metadata(data, fmt)
    geo = geocoder() if places and meta.latitude is not None else None
    meta, place = resolve(meta, geo)
    return result_fields(meta, place), metadata_tags(meta, place)


def describe_video(path: str | Path) -> tuple[dict[str, Any], list[Tag]]:
    """An MP4/MOV file → its creation time and position as the same result fields and
    place/time tags as a photo's (the creation time, given in UTC, read as the wall clock of
    the position's time zone). Never raises for a bad file."""
    meta = read_video_metadata(path)
    lat, lon = meta.latitude, meta.longitude
    place = geocoder().locate(lat, lon) if lat is not None and lon is not None else None
    if place is not None and place.time_zone:
        meta = in_zone(meta, place.time_zone)
    return result_fields(meta, place), metadata_tags(meta, place)


__all__ = [
    "FIELDS",
    "describe",
    "describe_video",
    "result_fields",
    "metadata_tags",
    "place_tags",
    "resolve",
    "season",
    "time_of_day",
    "time_tags",
]
