"""`autotag queues` on the real cluster: after photos went through, every component of the
running topology has a receive queue Storm reported, with its capacity and population."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from autotag.config import Settings, child_env
from autotag.learning import samples
from autotag.ops import queue_metrics as qm
from autotag.ops.daemons.base import wait_for
from autotag.ops.nimbus import NimbusClient
from autotag.pipeline import intake
from autotag.storage import database, lookups
from tests.cli import autotag, new_intake

N_PHOTOS = 12


def _wait_tagged(s: Settings, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with database.connect(s.services) as conn:
        while True:
            infos = [lookups.show(conn, i) for i in ids]
            if all(i is not None and i.status != "queued" for i in infos):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"photos still queued after {timeout}s")
            time.sleep(1)


def _queues(s: Settings) -> list[dict[str, Any]]:
    proc = autotag(s, "queues", "autotagger", "--json", timeout=60)
    if proc.returncode != 0:
        return []
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


@pytest.fixture(scope="module")
def after_photos(autotagger: Settings, tmp_path_factory: pytest.TempPathFactory) -> float:
    """Photos uploaded and tagged by the topology; the time they were uploaded."""
    paths = samples.export(tmp_path_factory.mktemp("photos"), samples.package_photos())
    started = time.time()
    records = intake.upload([str(p) for p in paths[:N_PHOTOS]], new_intake(autotagger), force=True)
    ids = [r.photo_id for r in records if r.photo_id]
    assert ids, records
    _wait_tagged(autotagger, ids, 300)
    return started


def test_every_component_reports_its_receive_queue(
    autotagger: Settings, after_photos: float
) -> None:
    nimbus = NimbusClient(autotagger)
    components = set(nimbus.components("autotagger"))
    assert {"photos", "autotag", "db_writer"} <= components
    executors = nimbus.topology_info("autotagger").executors or []
    assert any(qm.is_consumer(ex.component_id) for ex in executors)
    deadline = time.monotonic() + 120
    while True:
        rows = _queues(autotagger)
        fresh = [r for r in rows if r["time"] >= after_photos - 1 and r["queue"] == "receive-queue"]
        seen = {r["component"] for r in fresh}
        if components <= seen or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert components <= seen, f"no receive queue reported for {sorted(components - seen)}"
    for r in fresh:
        assert r["capacity"] > 0, r
        assert 0 <= r["population"] <= r["capacity"], r
        assert r["sojourn_time_ms"] is not None and r["sojourn_time_ms"] >= 0, r
        assert r["age_secs"] >= 0, r
    # One row per executor: the autotag bolt's tagging processes each have their own queue.
    taggers = [r for r in fresh if r["component"] == "autotag"]
    assert len({r["task"] for r in taggers}) == autotagger.tagging.taggers


def test_the_table_names_each_component(autotagger: Settings, after_photos: float) -> None:
    proc = autotag(autotagger, "queues", "autotagger", timeout=60)
    assert proc.returncode == 0, proc.stderr
    header, *lines = proc.stdout.splitlines()
    assert "POP" in header and "CAP" in header
    shown = {line.split()[0] for line in lines}
    assert {"photos", "autotag", "db_writer"} <= shown


def test_an_unknown_topology_is_a_one_line_error(autotagger: Settings) -> None:
    proc = autotag(autotagger, "queues", "no-such-topology", timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "no-such-topology" in proc.stderr


def test_metrics_log_lives_under_the_run_directory(autotagger: Settings) -> None:
    topology_id = NimbusClient(autotagger).topology("autotagger").id
    logs = list((autotagger.log_dir / "storm" / "workers-artifacts" / topology_id).glob("*/*"))
    assert any(p.name == "worker.log.metrics" for p in logs), [str(p) for p in logs]
    assert all(Path(p).resolve().is_relative_to(autotagger.run_dir.resolve()) for p in logs)


def test_queue_metrics_secs_0_submits_without_the_consumer(autotagger: Settings) -> None:
    """The off switch: no consumer executor, and `autotag queues` says how to get it back.
    (Last in the module: it replaces the module's topology.)"""
    env = {**child_env(autotagger), "AUTOTAG_QUEUE_METRICS_SECS": "0"}
    proc = autotag(autotagger, "submit", "autotagger", "--force", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    nimbus = NimbusClient(autotagger)
    assert wait_for(lambda: nimbus.topology("autotagger").status == "ACTIVE", 60)
    ids = {ex.component_id for ex in nimbus.topology_info("autotagger").executors or []}
    assert "autotag" in ids and not any(qm.is_consumer(i) for i in ids), ids
    proc = autotag(autotagger, "queues", "autotagger", timeout=60)
    assert proc.returncode != 0 and "queue_metrics_secs=0" in proc.stderr, proc.stderr
