"""Places as the Places page counts them: photos by country, and by city within it.

A photo's place is the ``photos.place`` label the tagger stored from its GPS position
(``vision.places.Place.label``: "city, region, country", repeats left out). Its last part is
the country; its first, when there are several, the city (or the region when the position
had no city). Both are also the photo's ``place`` tags (lower case), which is how the page
links a count to its search.
"""

from __future__ import annotations

from typing import Any

import psycopg

_COUNTS = """
SELECT place, count(*) FROM photos
WHERE place IS NOT NULL AND status = 'tagged'
GROUP BY place
"""


def split_label(label: str) -> tuple[str, str | None]:
    """(country, city or None) of a place label."""
    parts = [p.strip() for p in label.split(",") if p.strip()]
    if not parts:
        return "", None
    return parts[-1], parts[0] if len(parts) > 1 else None


def counts(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """``[{country, tag, photos, cities: [{city, tag, photos}]}]``, most photos first; ``tag``
    is the place tag that finds them."""
    countries: dict[str, dict[str, Any]] = {}
    for label, n in conn.execute(_COUNTS).fetchall():
        country, city = split_label(label)
        if not country:
            continue
        c = countries.setdefault(
            country, {"country": country, "tag": country.lower(), "photos": 0, "cities": {}}
        )
        c["photos"] += int(n)
        if city:
            entry = c["cities"].setdefault(city, {"city": city, "tag": city.lower(), "photos": 0})
            entry["photos"] += int(n)
    out = sorted(countries.values(), key=lambda c: (-c["photos"], c["country"]))
    for c in out:
        c["cities"] = sorted(c["cities"].values(), key=lambda x: (-x["photos"], x["city"]))
    return out
