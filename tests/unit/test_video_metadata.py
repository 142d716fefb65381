"""When and where a video was taken (vision.video_metadata, where_when.describe_video), from
MP4 files the tests write (OpenCV) and give a creation time and a ©xyz position or Apple's
keys; a video without them gets nothing, a malformed box costs only itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from autotag.vision.video_metadata import read_video_metadata
from autotag.vision.where_when import describe_video
from tests.video_metadata_files import with_metadata, write_mp4


@pytest.fixture(scope="module")
def plain_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_mp4(tmp_path_factory.mktemp("mp4") / "plain.mp4").read_bytes()


def test_creation_time_and_xyz_position_become_place_and_time_tags(
    plain_mp4: bytes, tmp_path: Path
) -> None:
    # 2019-07-14 05:30 UTC in Sydney: 15:30 local (+10:00), a winter afternoon
    p = tmp_path / "sydney.mp4"
    p.write_bytes(with_metadata(plain_mp4, datetime(2019, 7, 14, 5, 30), "-33.8568+151.2153/"))
    meta = read_video_metadata(p)
    assert meta.taken_local == datetime(2019, 7, 14, 5, 30) and meta.taken_offset == timedelta(0)
    assert meta.latitude == pytest.approx(-33.8568) and meta.longitude == pytest.approx(151.2153)
    fields, tags = describe_video(p)
    assert fields["taken_local"] == "2019-07-14T15:30:00"
    assert fields["taken_at"] == "2019-07-14T15:30:00+10:00"
    assert "Sydney" in fields["place"]
    words = {t.tag for t in tags}
    assert {"sydney", "australia", "2019", "july", "winter", "afternoon"} <= words


def test_apple_keys_give_the_local_time_and_position(plain_mp4: bytes, tmp_path: Path) -> None:
    p = tmp_path / "paris.mov"
    apple = {
        "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
        "com.apple.quicktime.creationdate": "2021-04-03T10:15:00+0200",
    }
    p.write_bytes(with_metadata(plain_mp4, datetime(2021, 4, 3, 8, 15), apple=apple))
    meta = read_video_metadata(p)
    assert meta.taken_local == datetime(2021, 4, 3, 10, 15)
    assert meta.taken_offset == timedelta(hours=2) and meta.altitude == pytest.approx(35.0)
    _, tags = describe_video(p)
    assert {"paris", "france", "2021", "april", "spring", "morning"} <= {t.tag for t in tags}


def test_a_video_without_metadata_gets_no_place_or_time_tag(
    plain_mp4: bytes, tmp_path: Path
) -> None:
    p = tmp_path / "plain.mp4"
    p.write_bytes(plain_mp4)
    fields, tags = describe_video(p)
    assert tags == [] and fields["taken_local"] is None and fields["latitude"] is None


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_malformed_or_truncated_boxes_cost_only_themselves(
    plain_mp4: bytes, tmp_path: Path, cut: float
) -> None:
    good = with_metadata(plain_mp4, datetime(2019, 7, 14, 5, 30), "-33.8568+151.2153/")
    p = tmp_path / "cut.mp4"
    p.write_bytes(good[: int(len(good) * cut)])
    describe_video(p)  # never raises
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(good[:32] + b"\xff" * 64 + good[96:])
    describe_video(bad)
    (tmp_path / "xyz.mp4").write_bytes(with_metadata(plain_mp4, xyz="+99.0+500.0/"))
    fields, tags = describe_video(tmp_path / "xyz.mp4")  # out of range: no position
    assert fields["latitude"] is None and tags == []
