"""Reading what a photo file says about itself (vision.metadata, vision.where_when) from files
the tests write EXIF/XMP into, HEIC included; malformed metadata costs only itself."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from autotag.vision.decode import DecodeLimits, decode
from autotag.vision.metadata import read_metadata
from autotag.vision.where_when import describe, season, time_of_day
from tests.photo_metadata import exif_for, heic_with, jpeg_with, xmp_packet

LIMITS = DecodeLimits(max_file_bytes=50 << 20, max_pixels=50_000_000, max_dimension=20_000)


def test_jpeg_exif_date_offset_gps_camera_and_xmp_keywords() -> None:
    ex = exif_for(
        "2021:04:03 09:15:30", "+09:00", 35.6586, 139.7454, 12.5, "FUJIFILM", "X-T3", "XF23mm"
    )
    data = jpeg_with(ex, xmp_packet(["Tokyo Tower", "cherry blossom"], "Spring walk"))
    meta = read_metadata(data, "JPEG")
    assert meta.taken_local == datetime(2021, 4, 3, 9, 15, 30)
    assert meta.taken_offset == timedelta(hours=9)
    assert meta.taken_at is not None and meta.taken_at.utcoffset() == timedelta(hours=9)
    assert meta.latitude == pytest.approx(35.6586, abs=1e-5)
    assert meta.longitude == pytest.approx(139.7454, abs=1e-5)
    assert meta.altitude == pytest.approx(12.5)
    assert meta.camera == "FUJIFILM X-T3" and meta.lens == "XF23mm"
    assert meta.keywords == ("Tokyo Tower", "cherry blossom")
    assert meta.title == "Spring walk"
    assert meta.problems == ()


def test_time_zone_from_the_gps_position_when_the_file_has_no_offset() -> None:
    # July in Sydney: winter, and the offset is Sydney's (+10:00 in July, no daylight saving).
    data = jpeg_with(exif_for("2019:07:14 15:30:00", lat=-33.8568, lon=151.2153))
    fields, tags = describe(data, "JPEG")
    assert fields["taken_local"] == "2019-07-14T15:30:00"
    assert fields["taken_at"] == "2019-07-14T15:30:00+10:00"
    assert "gps time zone" in fields["taken_source"]
    by_kind = {(t.tag, t.kind) for t in tags}
    assert {("sydney", "place"), ("australia", "place"), ("new south wales", "place")} <= by_kind
    assert {
        ("2019", "time"),
        ("july", "time"),
        ("winter", "time"),
        ("afternoon", "time"),
    } <= by_kind


def test_no_position_no_zone_is_marked_local_time() -> None:
    data = jpeg_with(exif_for("2018:12:24 20:00:00", make="Canon", model="Canon EOS 80D"))
    fields, tags = describe(data, "JPEG")
    assert fields["taken_at"] is None and "(local time)" in fields["taken_source"]
    assert fields["camera"] == "Canon EOS 80D"
    assert {t.tag for t in tags if t.kind == "time"} >= {"2018", "december", "winter", "evening"}
    assert not [t for t in tags if t.kind == "place"]


def test_a_photo_with_no_metadata_gets_no_place_or_time_tag() -> None:
    fields, tags = describe(jpeg_with(None), "JPEG")
    assert tags == []
    assert all(v is None for v in fields.values())


def test_heic_exif_is_read_and_decoded() -> None:
    data = heic_with(exif_for("2020:08:01 07:00:00", "+02:00", 48.8584, 2.2945, make="Apple"))
    decoded = decode(data, LIMITS)
    assert decoded.format == "HEIF" and (decoded.width, decoded.height) == (640, 480)
    fields, tags = describe(data, decoded.format)
    assert fields["taken_at"] == "2020-08-01T07:00:00+02:00"
    assert {"paris", "france", "2020", "august", "summer", "morning"} <= {t.tag for t in tags}


def test_truncated_heic_fails_with_a_reason() -> None:
    from autotag.errors import ImageError

    data = heic_with(None)
    for cut in (40, len(data) // 2, len(data) - 20):
        with pytest.raises(ImageError, match="HEIF"):
            decode(data[:cut], LIMITS)


def test_malformed_metadata_costs_only_itself() -> None:
    ex = exif_for("2017:13:45 99:99:99", "+99:00", make="Nikon")
    gps = ex.get_ifd(0x8825)
    gps[2] = (1.0, 2.0)  # two values where three belong
    gps[4] = (3.0, 4.0, 5.0)
    data = jpeg_with(ex, b"<x:xmpmeta><dc:subject><rdf:Bag><rdf:li>ok</rdf:li>")
    meta = read_metadata(data, "JPEG")
    assert meta.taken_local is None and meta.latitude is None
    assert meta.camera_make == "Nikon"
    # garbage bytes where the EXIF block belongs: still decoded, still described
    broken = data.replace(b"Exif\x00\x00", b"Exif\x00\x00\xff\xff\xff\xff", 1)
    assert decode(broken, LIMITS).format == "JPEG"
    fields, tags = describe(broken, "JPEG")
    assert fields["latitude"] is None


def test_seasons_by_hemisphere_and_times_of_day() -> None:
    assert season(7, 48.0) == "summer" and season(7, -33.9) == "winter"
    assert season(1, -33.9) == "summer" and season(10, 60.0) == "autumn"
    assert season(4, -1.0) == "autumn"
    assert [time_of_day(h) for h in (6, 13, 18, 23, 2)] == [
        "morning",
        "afternoon",
        "evening",
        "night",
        "night",
    ]


def test_place_names_are_also_found_without_their_accents() -> None:
    # Reykjavik and São Paulo: people type the names without the accents GeoNames has
    for lat, lon, plain in ((64.1466, -21.9426, "reykjavik"), (-23.5614, -46.6559, "sao paulo")):
        _, tags = describe(jpeg_with(exif_for(lat=lat, lon=lon)), "JPEG")
        by_name = {t.tag: t for t in tags}
        assert plain in by_name and by_name[plain].via is not None  # an alias of the real name
        assert by_name[plain].via in by_name and by_name[plain].via != plain
