"""Where and when, end to end on the real cluster (issue 26): a JPEG and a HEIC carrying
GPS positions and dates taken are uploaded and tagged by the topology; `autotag search`
finds them by city, country, year, month and season (July in Sydney is winter), `--from/--to`
selects them by the date taken, the API's `from=`/`to=` too, `autotag show` prints what the
files said, and a truncated HEIC fails with a reason while the others are tagged. Camera RAW
too: DNGs (written by tests/raw_files.py) tagged through the topology and found by place and
time, a RAW bomb and a truncated DNG failing with reasons."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.pipeline import intake
from autotag.storage import database, tag_search, videos
from tests.cli import autotag, new_intake, search_ids
from tests.integration.test_pipeline import _wait_settled
from tests.integration.test_video import _wait_videos
from tests.photo_metadata import exif_for, heic_with, jpeg_with, xmp_packet
from tests.raw_files import dng
from tests.video_metadata_files import with_metadata, write_mp4

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def photos(autotagger: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("where_when")
    paris = jpeg_with(
        exif_for("2021:04:03 10:15:00", "+02:00", 48.8584, 2.2945, 35.0, "Canon", "Canon EOS R"),
        xmp_packet(["Eiffel Tower", "honeymoon"]),
        seed=2601,
    )
    # no offset in the file: the time zone comes from the position (Sydney, +10:00 in July)
    sydney = heic_with(exif_for("2019:07:14 15:30:00", lat=-33.8568, lon=151.2153), seed=2602)
    (d / "paris.jpg").write_bytes(paris)
    (d / "sydney.heic").write_bytes(sydney)
    (d / "broken.heic").write_bytes(heic_with(None, seed=2603)[:300])
    # Camera RAW: a DNG with an embedded preview (Reykjavik, Christmas Eve 2018, 18:00), one
    # without (its sensor data demosaiced), a RAW bomb and a truncated DNG.
    reykjavik = dng(
        2604, taken="2018:12:24 18:00:00", offset="+00:00", lat=64.1466, lon=-21.9426,
        make="NIKON CORPORATION", model="NIKON Z 6", preview=(640, 480),
    )  # fmt: skip
    (d / "reykjavik.dng").write_bytes(reykjavik)
    (d / "sensor.dng").write_bytes(dng(2605, taken="2018:06:01 12:00:00"))
    (d / "bomb.dng").write_bytes(dng(2606, size=(64, 64), declared=(60_000, 60_000)))
    (d / "truncated.dng").write_bytes(dng(2607, preview=(640, 480))[:150_000])
    records = intake.upload([str(d)], new_intake(autotagger), force=True)
    ids = {Path(r.path).name: r.photo_id for r in records if r.photo_id}
    assert set(ids) == {
        "paris.jpg", "sydney.heic", "broken.heic",
        "reykjavik.dng", "sensor.dng", "bomb.dng", "truncated.dng",
    }, records  # fmt: skip
    _wait_settled(autotagger, list(ids.values()), 300)
    return ids


def _outcomes(s: Settings, photos: dict[str, str]) -> dict[str, str]:
    """Each photo's 'status:reason' (the reason empty unless it failed), by photo id."""
    with database.connect(s.services) as conn:
        return dict(
            conn.execute(
                "SELECT photo_id, status || ':' || coalesce(reason, '') FROM photos"
                " WHERE photo_id = ANY(%s)",
                (list(photos.values()),),
            ).fetchall()
        )


def test_heic_and_jpeg_tagged_truncated_heic_fails_with_reason(
    autotagger: Settings, photos: dict[str, str]
) -> None:
    rows = _outcomes(autotagger, photos)
    assert rows[photos["paris.jpg"]].startswith("tagged")
    assert rows[photos["sydney.heic"]].startswith("tagged")
    assert (
        rows[photos["broken.heic"]].startswith("failed:") and "HEIF" in rows[photos["broken.heic"]]
    )


def test_raw_files_tagged_raw_bomb_and_truncated_raw_fail_with_reasons(
    autotagger: Settings, photos: dict[str, str]
) -> None:
    rows = _outcomes(autotagger, photos)
    assert rows[photos["reykjavik.dng"]].startswith("tagged"), rows
    assert rows[photos["sensor.dng"]].startswith("tagged"), rows
    assert rows[photos["bomb.dng"]].startswith("failed:image is 60000x60000"), rows
    assert rows[photos["truncated.dng"]].startswith("failed:truncated DNG file"), rows
    # the RAWs' neighbours were not affected
    assert rows[photos["paris.jpg"]].startswith("tagged")
    text = autotag(autotagger, "show", photos["reykjavik.dng"]).stdout
    assert "NIKON Z 6" in text and "Reykjav" in text
    # the one without a preview was tagged from its sensor data: concept tags, and a year
    out = autotag(autotagger, "show", photos["sensor.dng"], "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["metadata"]["taken_local"] == "2018-06-01T12:00:00"


@pytest.mark.parametrize(
    "words, photo",
    [
        (["paris"], "paris.jpg"),
        (["france"], "paris.jpg"),
        (["2021"], "paris.jpg"),
        (["april"], "paris.jpg"),
        (["spring"], "paris.jpg"),
        (["eiffel", "tower"], "paris.jpg"),
        (["sydney"], "sydney.heic"),
        (["australia"], "sydney.heic"),
        (["2019"], "sydney.heic"),
        (["july"], "sydney.heic"),
        (["winter"], "sydney.heic"),
        (["australia", "2019", "winter"], "sydney.heic"),
        (["reykjavik"], "reykjavik.dng"),
        (["iceland", "2018", "december", "winter", "evening"], "reykjavik.dng"),
    ],
)
def test_search_by_place_and_time(
    autotagger: Settings, photos: dict[str, str], words: list[str], photo: str
) -> None:
    found = search_ids(autotagger, *words, limit=1000)
    assert photos[photo] in found
    other = "sydney.heic" if photo == "paris.jpg" else "paris.jpg"
    assert photos[other] not in found


def test_search_from_to_by_date_taken(autotagger: Settings, photos: dict[str, str]) -> None:
    winter = search_ids(autotagger, "--from", "2019-06-01", "--to", "2019-08-31", limit=1000)
    assert photos["sydney.heic"] in winter and photos["paris.jpg"] not in winter
    spring = search_ids(autotagger, "--from", "2021-04-03", "--to", "2021-04-03", limit=1000)
    assert photos["paris.jpg"] in spring and photos["sydney.heic"] not in spring
    # words and dates together: Paris photos of 2019 are none
    assert photos["paris.jpg"] not in search_ids(
        autotagger, "paris", "--to", "2020-12-31", limit=1000
    )
    # the same query as the API's from=/to= (TagQuery is shared)
    with database.connect(autotagger.services) as conn:
        page = tag_search.search(
            conn,
            tag_search.TagQuery(
                "winter",
                taken_from=__import__("datetime").date(2019, 7, 1),
                taken_to=__import__("datetime").date(2019, 7, 31),
            ),
        )
    assert photos["sydney.heic"] in {h["photo_id"] for h in page.hits}


def test_show_prints_what_the_file_said(autotagger: Settings, photos: dict[str, str]) -> None:
    out = autotag(autotagger, "show", photos["sydney.heic"], "--json")
    assert out.returncode == 0, out.stderr
    meta = json.loads(out.stdout)["metadata"]
    assert meta["taken_local"] == "2019-07-14T15:30:00"
    assert meta["taken_at"].startswith("2019-07-14T05:30:00")  # 15:30 +10:00, in UTC
    assert "gps time zone" in meta["taken_source"]
    assert meta["latitude"] == pytest.approx(-33.8568, abs=1e-4)
    text = autotag(autotagger, "show", photos["paris.jpg"]).stdout
    assert "Canon EOS R" in text and "Paris" in text and "Eiffel Tower" in text


def test_video_creation_time_and_position_find_its_segments(
    autotagger: Settings, tmp_path: Path
) -> None:
    # An MP4 made at Christmas Eve 2018, 18:00 UTC (18:00 in Reykjavik, UTC all year), with
    # the position a phone writes (moov/udta/©xyz); and one without any metadata.
    seed = int(time.time()) % 100_000
    clip = write_mp4(tmp_path / "clip.mp4", seconds=2.0, seed=seed).read_bytes()
    (tmp_path / "reykjavik.mp4").write_bytes(
        with_metadata(clip, datetime(2018, 12, 24, 18, 0), "+64.1466-021.9426/")
    )
    (tmp_path / "plain.mp4").write_bytes(write_mp4(tmp_path / "p.mp4", seed=seed + 1).read_bytes())
    (tmp_path / "clip.mp4").unlink()
    (tmp_path / "p.mp4").unlink()
    records = intake.upload([str(tmp_path)], new_intake(autotagger), force=True)
    ids = {Path(r.path).name: r.photo_id for r in records if r.status == "queued"}
    assert set(ids) == {"reykjavik.mp4", "plain.mp4"}, records
    status = _wait_videos(autotagger, list(ids.values()), 300)
    assert set(status.values()) == {"done"}, status
    with database.connect(autotagger.services) as conn:
        info = videos.show_video(conn, ids["reykjavik.mp4"])
        assert info is not None
        v = info.video
        assert v["taken_local"] == "2018-12-24T18:00:00"
        assert "Reykjav" in v["place"] and v["latitude"] == pytest.approx(64.1466, abs=1e-4)
        assert {"reykjavik", "iceland", "2018", "december", "winter", "evening"} <= set(
            v["meta_tags"]
        )
        plain = videos.show_video(conn, ids["plain.mp4"])
        assert plain is not None
        assert plain.video["taken_local"] is None and plain.video["meta_tags"] == []
        for word in ("reykjavik", "iceland", "2018", "december"):
            hits = videos.search_segments(conn, word, limit=1000)
            found = {h.video_id for h in hits}
            assert ids["reykjavik.mp4"] in found and ids["plain.mp4"] not in found, word
        assert ids["reykjavik.mp4"] not in {
            h.video_id for h in videos.search_segments(conn, "paris")
        }
    # `autotag search WORD` lists the video's segments with the photos
    out = autotag(autotagger, "search", "reykjavik", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    assert ids["reykjavik.mp4"] in {h.get("video_id") for h in json.loads(out.stdout)}
