"""Place labels as the Places page splits them into country and city."""

from __future__ import annotations

from autotag.storage.places import split_label


def test_split_label_country_last_city_first() -> None:
    assert split_label("Paris, Île-de-France, France") == ("France", "Paris")
    assert split_label("Tokyo, Japan") == ("Japan", "Tokyo")
    assert split_label("Iceland") == ("Iceland", None)
    assert split_label(" , ") == ("", None)
