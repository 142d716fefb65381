"""Shared fixtures: real services on loopback, started by the tests themselves.

Tests run against their own run directory and a port offset, so they never touch a
cluster the user has running. Fixtures are session-scoped: each service starts once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotag.config import Settings, child_env, load_settings
from tests.constants import CHAOS_KILL_ENV, POISON_PHOTO

TEST_PORT_OFFSET = int(os.environ.get("AUTOTAG_TEST_PORT_OFFSET", "20000"))


@pytest.fixture(scope="session")
def test_settings() -> Iterator[Settings]:
    """Settings for an isolated test environment; exported to os.environ for child processes."""
    # Not under pytest's tmp base: when tests run as root the Postgres cluster belongs to the
    # postgres user, who must be able to pass through to its data (run_dir.prepare: 0710 with
    # group postgres; 0700 for everyone else).
    from autotag.ops import run_dir as run_dirs

    run_dir = Path(
        os.environ.get("AUTOTAG_TEST_RUN_DIR") or tempfile.mkdtemp(prefix="autotag-test-")
    )
    run_dirs.prepare(run_dir)
    models_dir = Path(os.environ.get("AUTOTAG_TEST_MODELS_DIR") or (run_dir / "models"))
    models_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AUTOTAG_RUN_DIR": str(run_dir),
        "AUTOTAG_MODELS_DIR": str(models_dir),
        "AUTOTAG_PORT_OFFSET": str(TEST_PORT_OFFSET),
        # A smaller upload limit keeps the hostile corpus' oversized file small.
        "AUTOTAG_MAX_FILE_BYTES": os.environ.get("AUTOTAG_MAX_FILE_BYTES", str(8 * 1024 * 1024)),
        CHAOS_KILL_ENV: hashlib.sha256(POISON_PHOTO).hexdigest(),
    }
    s = load_settings(env)
    saved = dict(os.environ)
    os.environ.update(child_env(s))
    os.environ[CHAOS_KILL_ENV] = env[CHAOS_KILL_ENV]
    from autotag import config

    config.settings.cache_clear()
    yield s
    if not os.environ.get("AUTOTAG_TEST_RUN_DIR") and not os.environ.get("AUTOTAG_KEEP_TEST_RUN"):
        shutil.rmtree(run_dir, ignore_errors=True)
    os.environ.clear()
    os.environ.update(saved)
    config.settings.cache_clear()


@pytest.fixture(scope="session")
def redis_service(test_settings: Settings) -> Iterator[Settings]:
    from autotag.ops.daemons.redis import RedisDaemon

    d = RedisDaemon(test_settings)
    d.start()
    yield test_settings
    d.stop()


@pytest.fixture(scope="session")
def postgres_service(test_settings: Settings) -> Iterator[Settings]:
    """Postgres up, schema migrated by the owner role, as `autotag cluster up` leaves it."""
    from autotag.ops import cluster
    from autotag.ops.daemons.postgres import PostgresDaemon

    d = PostgresDaemon(test_settings)
    d.start()
    cluster.prepare_database(test_settings, progress=lambda _msg: None)
    yield test_settings
    d.stop()


@pytest.fixture(scope="session")
def services(redis_service: Settings, postgres_service: Settings) -> Settings:
    """Redis and Postgres, both up, for the test settings."""
    return redis_service


@pytest.fixture(scope="session")
def storm_cluster(test_settings: Settings) -> Iterator[Settings]:
    """A real local Storm cluster (ZooKeeper, Nimbus, Supervisor, UI) for the test settings."""
    from autotag.ops import cluster

    cluster.up(test_settings, cluster.STORM_DAEMONS, progress=lambda _msg: None)
    yield test_settings
    cluster.down(test_settings, cluster.STORM_DAEMONS, progress=lambda _msg: None)


@pytest.fixture(scope="session")
def default_bundle(test_settings: Settings) -> str:
    """The default ImageNet bundle, built into the test models dir and active."""
    from autotag.vision.bundle import set_active
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    bundle_id = build_default_bundle(
        test_settings.models_dir, onnx_model_path(test_settings.model_dirs)
    )
    set_active(test_settings.models_dir, bundle_id)
    return bundle_id


@pytest.fixture
def restore_default(autotagger: Settings, default_bundle: str) -> Iterator[str]:
    """For a test that activates another bundle: the default one is active again after it,
    as later modules expect."""
    from autotag.vision.bundle import set_active

    yield default_bundle
    set_active(autotagger.models_dir, default_bundle)


@pytest.fixture(scope="module")
def autotagger(
    request: pytest.FixtureRequest, storm_cluster: Settings, services: Settings, default_bundle: str
) -> Iterator[Settings]:
    """The autotagger topology running on the test cluster (submitted with sparse submit),
    for one test module: killed afterwards so it never competes with other tests' readers.
    A module's ``TOPOLOGY_OPTIONS`` (``sparse submit -o`` strings) are passed at submit time."""
    from autotag.ops import cluster, kill_guard
    from autotag.ops.daemons.base import wait_for
    from autotag.ops.nimbus import NimbusClient
    from autotag.ops.topology import submit
    from autotag.storage import database

    cluster.up(storm_cluster, cluster.DATA_DAEMONS, progress=lambda _m: None)  # migrations
    with database.connect(storm_cluster.services):
        pass
    submit(storm_cluster, "autotagger", options=getattr(request.module, "TOPOLOGY_OPTIONS", None))
    assert wait_for(
        lambda: NimbusClient(storm_cluster).topology("autotagger").status == "ACTIVE", 60
    )
    # Until its worker runs: the module's tests want it working, and a kill before then (a
    # test's own, or ours below) can halt Storm 2.8.3's Supervisor (autotag.ops.kill_guard).
    kill_guard.wait_settled(storm_cluster, "autotagger", 120)
    yield storm_cluster
    try:
        kill_guard.kill(storm_cluster, "autotagger")
        wait_for(
            lambda: "autotagger" not in {t.name for t in NimbusClient(storm_cluster).topologies()},
            60,
        )
    except Exception:  # noqa: BLE001 - the cluster is going down anyway
        pass
