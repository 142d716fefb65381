"""End to end on the real cluster, Redis and Postgres: upload → topology → tags in Postgres.

What a user checks: every uploaded photo is tagged within a bounded time; the tags and scores
in Postgres are exactly what the same model gives when run directly in Python on the same
files (the topology changes nothing); obvious photos get the obvious tags; hostile files end
as `failed` with a reason while the topology keeps working.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from autotag.config import Settings
from autotag.learning import samples
from autotag.pipeline import intake
from autotag.pipeline.tag_step import load_tagger
from autotag.storage import database, lookups, tag_search, vectors
from tests.cli import new_intake
from tests.constants import POISON_PHOTO

pytestmark = pytest.mark.cluster

N_PHOTOS = 200
TAG_TIMEOUT_SECS = 600


@pytest.fixture
def poison_photo(tmp_path: Path) -> Path:
    """The photo the test cluster's fault hook crashes on (tests/constants.py)."""
    path = tmp_path / "poison.jpg"
    path.write_bytes(POISON_PHOTO)
    return path


def _wait_settled(s: Settings, ids: list[str], timeout: float) -> dict[str, str]:
    """Wait until none of ids is 'queued'; return photo_id -> status."""
    deadline = time.monotonic() + timeout
    with database.connect(s.services) as conn:
        while True:
            rows = conn.execute(
                "SELECT photo_id, status FROM photos WHERE photo_id = ANY(%s)", (ids,)
            ).fetchall()
            status = dict(rows)
            if len(status) == len(ids) and "queued" not in status.values():
                return status
            if time.monotonic() > deadline:
                left = [i for i in ids if status.get(i, "queued") == "queued"]
                pytest.fail(f"{len(left)} of {len(ids)} photos still queued after {timeout}s")
            time.sleep(1)


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """≥ 200 distinct real photos from installed packages (scikit-image, scikit-learn, Tux Paint)."""
    paths = samples.package_photos() + samples.tuxpaint_photos()
    out = samples.export(tmp_path_factory.mktemp("photos"), paths)
    unique: dict[bytes, Path] = {}
    for p in out:
        unique.setdefault(p.read_bytes(), p)
    chosen = list(unique.values())[: N_PHOTOS + 20]
    assert len(chosen) >= N_PHOTOS, "need Debian's tuxpaint-stamps-default for enough real photos"
    return chosen


@pytest.fixture(scope="module")
def uploaded(autotagger: Settings, real_photos: list[Path]) -> dict[str, Path]:
    # force: other tests may have left the same bytes 'queued' without a stream entry.
    records = intake.upload([str(p) for p in real_photos], new_intake(autotagger), force=True)
    assert {r.status for r in records} <= {"queued", "duplicate", "already-tagged"}, records
    ids = {r.photo_id: Path(r.path) for r in records if r.photo_id}
    status = _wait_settled(autotagger, list(ids), TAG_TIMEOUT_SECS)
    failed = {ids[i].name for i, st in status.items() if st != "tagged"}
    assert not failed, f"real photos failed: {sorted(failed)[:10]}"
    return ids


def test_every_photo_is_tagged(uploaded: dict[str, Path]) -> None:
    assert len(uploaded) >= N_PHOTOS


def test_topology_results_equal_direct_python(
    autotagger: Settings, uploaded: dict[str, Path]
) -> None:
    tagger = load_tagger(autotagger.tagging, autotagger.limits)
    with database.connect(autotagger.services) as conn:
        for photo_id, path in uploaded.items():
            direct = tagger.tag_file(path)
            info = lookups.show(conn, photo_id)
            assert info is not None and info.status == "tagged"
            assert info.model_version == direct.model_version
            stored = dict(info.tags)
            expected = {t.tag: t.score for t in direct.tags}
            assert stored.keys() == expected.keys(), (path.name, stored, expected)
            assert info.kinds == {t.tag: (t.kind, t.via) for t in direct.tags}, path.name
            for tag, score in expected.items():
                assert stored[tag] == pytest.approx(score, abs=1e-5), (path.name, tag)
            # (other tests may have stored this photo's vector of another feature set too)
            vec = vectors.get_vector(conn, photo_id, direct.feature_set)
            assert vec is not None
            assert np.allclose(vec, direct.vector, atol=1e-6)


def _named(uploaded: dict[str, Path], name: str) -> Path:
    """The uploaded copy of a sample (copies may carry an index prefix)."""
    (path,) = [p for p in uploaded.values() if p.name == name or p.name.endswith("_" + name)]
    return path


def _tags_of(s: Settings, path: Path) -> list[str]:
    from autotag.checksums import file_sha256 as hash_file

    with database.connect(s.services) as conn:
        info = lookups.show(conn, hash_file(path))
    assert info is not None, path
    return [t.lower() for t, _ in info.tags]


def test_obvious_photos_get_obvious_tags(autotagger: Settings, uploaded: dict[str, Path]) -> None:
    cat = _tags_of(autotagger, _named(uploaded, "chelsea.png"))
    assert any("cat" in t or "tabby" in t for t in cat), cat
    coffee = _tags_of(autotagger, _named(uploaded, "coffee.png"))
    assert any(w in t for t in coffee for w in ("espresso", "cup", "coffee")), coffee
    astronaut = _tags_of(autotagger, _named(uploaded, "astronaut.png"))
    assert "person" in astronaut or "face" in astronaut, astronaut


def test_search_finds_the_cat(autotagger: Settings, uploaded: dict[str, Path]) -> None:
    from autotag.checksums import file_sha256 as hash_file

    chelsea = hash_file(_named(uploaded, "chelsea.png"))
    with database.connect(autotagger.services) as conn:
        tags = [t for t, _ in lookups.show(conn, chelsea).tags if "cat" in t.lower()]
        hits = tag_search.search(conn, tag_search.TagQuery(tags[0], limit=50)).hits
    assert chelsea in [h["photo_id"] for h in hits]


def test_hostile_files_fail_with_reasons_and_topology_keeps_working(
    autotagger: Settings, tmp_path: Path
) -> None:
    from tests.hostile import make_hostile_corpus

    expected = make_hostile_corpus(tmp_path / "hostile", max_bytes=autotagger.limits.max_file_bytes)
    uploads = intake.upload([str(tmp_path / "hostile")], new_intake(autotagger), force=True)
    records = {Path(r.path).name: r for r in uploads}
    assert set(records) == set(expected)
    queued = {
        name: r.photo_id for name, r in records.items() if r.status in ("queued", "duplicate")
    }
    for name, r in records.items():
        if r.status == "rejected":  # refused at upload (size limit), with a reason, nothing queued
            assert expected[name] == "failed" and r.reason, (name, r)
    status = _wait_settled(autotagger, list(set(queued.values())), 300)
    with database.connect(autotagger.services) as conn:
        for name, pid in queued.items():
            info = lookups.show(conn, pid)
            assert status[pid] == expected[name], (name, status[pid], info.reason)
            if status[pid] == "failed":
                assert info.reason and len(info.reason) > 10, (name, info.reason)
                assert info.attempts <= 1, f"{name} was replayed {info.attempts} times"

    # The bolts survived: a fresh good photo is still tagged.
    good = tmp_path / "after.png"
    import cv2

    img = np.full((120, 160, 3), 200, np.uint8)
    cv2.circle(img, (80, 60), 40, (30, 90, 200), -1)
    cv2.putText(img, str(time.time()), (5, 110), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(good), img)
    (rec,) = intake.upload([str(good)], new_intake(autotagger))
    assert _wait_settled(autotagger, [rec.photo_id], 120)[rec.photo_id] == "tagged"


def test_no_autotag_port_listens_on_a_wildcard_address(autotagger: Settings) -> None:
    """`ss -ltnp` with the cluster, the data services and the topology's worker up: every
    socket of this run (by port, or by process) is bound to the host's address only."""
    from autotag.ops.daemons.base import port_open, wait_for

    s = autotagger
    slots = {s.services.port(p) for p in s.services.worker_ports}
    assert wait_for(lambda: any(port_open(s.services.host, p) for p in slots), 180), (
        "no worker started"
    )
    ours = set(s.services.ports.values())
    marker = f"AUTOTAG_RUN_DIR={s.run_dir}".encode()

    def of_this_run(pid: int) -> bool:
        try:
            return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False

    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    checked = []
    for line in out.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        if int(port) in ours or any(of_this_run(p) for p in pids):
            checked.append(local)
            assert address == s.services.host, f"autotag listens on a wildcard address: {line}"
    net = s.services
    named = {net.port(net.zookeeper_port), net.port(net.nimbus_port), net.port(net.redis_port),
             net.port(net.postgres_port), net.port(net.supervisor_port)}  # fmt: skip
    assert named <= {int(c.rsplit(":", 1)[1]) for c in checked}, checked
    assert any(int(c.rsplit(":", 1)[1]) in slots for c in checked), checked


def test_a_poison_photo_costs_its_neighbours_nothing(
    autotagger: Settings, tmp_path: Path, poison_photo: Path
) -> None:
    """Item 9 on the real topology: a photo that kills the bolt process tagging it, every
    time (as a native decoder crash would), takes its worker down three times; it alone is
    dead-lettered, and every photo that was in flight with it is tagged."""
    from autotag.storage.item_stream import ItemStream

    s = autotagger
    neighbours = samples.make_distinct_photos(16, tmp_path / "n", long_side=160, seed=4242)
    paths = [*neighbours[:8], poison_photo, *neighbours[8:]]
    records = intake.upload([str(p) for p in paths], new_intake(s), force=True)
    ids = {Path(r.path).name: r.photo_id for r in records}
    assert all(ids.values()) and len(set(ids.values())) == len(paths), records
    poison = ids[poison_photo.name]
    status = _wait_settled(s, list(ids.values()), TAG_TIMEOUT_SECS)
    assert status.pop(poison) == "failed"
    assert set(status.values()) == {"tagged"}, {n: status.get(i) for n, i in ids.items()}
    with database.connect(s.services) as conn:
        info = lookups.show(conn, poison)
    assert info is not None and info.attempts == 3
    assert "gave up after 3 attempts: the worker tagging it died" in (info.reason or "")
    dead = {d.item_id for d in ItemStream(s.services, s.queue).dead_letters(1000)}
    assert poison in dead and not dead & set(status)
