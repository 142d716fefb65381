"""The whole local system as one unit: bring it up in order, report on it, take it down.

Order matters: ZooKeeper before Nimbus, Nimbus before the Supervisor registers, and the
data services (Redis, Postgres) before any topology runs. ``up`` is idempotent.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence

from autotag.config import Settings, child_env
from autotag.errors import ServiceError
from autotag.ops import run_dir, workers
from autotag.ops.daemons.base import Daemon, Status, check_ports
from autotag.ops.daemons.blob_service import BlobServiceDaemon
from autotag.ops.daemons.postgres import PostgresDaemon
from autotag.ops.daemons.redis import RedisDaemon
from autotag.ops.daemons.storm import NimbusDaemon, SupervisorDaemon, ZooKeeperDaemon
from autotag.ops.daemons.storm_home import ensure_storm_home, java_bin
from autotag.ops.web_token import load_or_create_token, read_token
from autotag.storage import database


class StormUiDaemon(Daemon):
    """The REST/HTML Storm UI (autotag.ops.storm_ui) as a managed process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="ui", port=settings.services.port(settings.services.ui_port)
        )
        self.env_extra = child_env(settings)

    @property
    def address(self) -> str:
        return self.settings.services.local_bind_host  # for this host's users, not for other hosts

    def argv(self) -> Sequence[str]:
        return [sys.executable, "-m", "autotag.ops.storm_ui"]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import json
        import urllib.request

        url = f"http://{self.address}:{self.port}/api/v1/cluster/summary"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                json.loads(resp.read())
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            return f"{url} failed: {exc}"
        return None


class WebDaemon(Daemon):
    """The web page and HTTP API (``python -m autotag.web``, uvicorn) as a managed process.

    Healthy when ``/healthz`` answers 200 to the token in the run directory's token file:
    the server is up, the token works, and it reaches Redis and Postgres.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="web", port=settings.services.port(settings.services.http_port)
        )
        self.env_extra = child_env(settings)

    @property
    def address(self) -> str:
        return self.settings.services.local_bind_host  # for this host's users, not for other hosts

    def argv(self) -> Sequence[str]:
        return [sys.executable, "-m", "autotag.web"]

    def prepare(self) -> None:
        load_or_create_token(self.settings.run_dir)  # before start: `autotag url` agrees

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        import json
        import urllib.error
        import urllib.request

        url = f"http://{self.address}:{self.port}/healthz"
        try:
            token = read_token(self.settings.run_dir)
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read())
            except ValueError:
                detail = {}
            why = detail.get("error") or ", ".join(
                f"{k}: {v}" for k, v in detail.items() if k != "ok" and v != "ok"
            )
            return f"{url} answered {exc.code}: {why or exc.reason}"
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            return f"{url} failed: {exc}"
        return None


STORM_DAEMONS = ("zookeeper", "nimbus", "supervisor", "ui")
DATA_DAEMONS = ("redis", "postgres")
WEB_DAEMONS = ("web",)


def daemons(settings: Settings, names: Sequence[str] | None = None) -> list[Daemon]:
    """All managed daemons in start order (optionally only the named ones)."""
    factories: dict[str, Callable[[Settings], Daemon]] = {
        "zookeeper": ZooKeeperDaemon,
        "nimbus": NimbusDaemon,
        "supervisor": SupervisorDaemon,
        "ui": StormUiDaemon,
        "redis": RedisDaemon,
        "postgres": PostgresDaemon,
        "blobs": BlobServiceDaemon,
        "web": WebDaemon,
    }
    wanted = list(names) if names else list(factories)
    unknown = [n for n in wanted if n not in factories]
    if unknown:
        raise ServiceError(f"unknown service {unknown[0]!r}; known: {', '.join(factories)}")
    return [factories[n](settings) for n in factories if n in wanted]


def preflight(settings: Settings) -> None:
    """Fail early, with the reason, when a prerequisite is missing."""
    check_ports(settings)
    run_dir.check(settings.run_dir)
    java_bin()
    if not (settings.venv / "bin" / "streamparse_run").exists() and not shutil.which(
        "streamparse_run"
    ):
        raise ServiceError(
            "streamparse_run not found: run scripts/install-deps.sh to build the virtualenv"
        )


def up(
    settings: Settings, names: Sequence[str] | None = None, progress: Callable[[str], None] = print
) -> list[Status]:
    """Start every (or the named) daemon that is not running; wait until all are healthy."""
    preflight(settings)
    run_dir.prepare(settings.run_dir)
    selected = daemons(settings, names)
    if any(d.name in STORM_DAEMONS for d in selected):
        progress(f"storm.home: {settings.storm_home}")
        ensure_storm_home(settings)
    statuses = []
    for d in selected:
        t0 = time.monotonic()
        st = d.start(wait=True)
        progress(
            f"{d.name:<10} up   pid {st.pid}  port {st.port or '-'}  ({time.monotonic() - t0:.1f}s)"
        )
        statuses.append(st)
        if d.name == "postgres":  # schema first: the web service reads it
            prepare_database(settings, progress)
    stop_orphan_workers(settings, progress)
    return statuses


def stop_orphan_workers(settings: Settings, progress: Callable[[str], None] = print) -> None:
    """Kill workers this host's Supervisor has lost track of (see ops.workers)."""
    for w in workers.kill_orphans(settings.storm_local_dir):
        progress(f"worker     pid {w.pid} (port {w.port}) was orphaned by its Supervisor: stopped")


def joining_settings(
    settings: Settings, nimbus_host: str, bind_host: str = "", advertise_host: str = ""
) -> Settings:
    """Settings for a host that joins the cluster whose services run on ``nimbus_host``:
    services reached there, photos read from its blob service, this host's servers bound to
    its own cluster address."""
    bind = bind_host or settings.services.bind_host
    if not bind or bind in ("0.0.0.0", "::"):
        raise ServiceError(
            "joining a cluster needs this host's own cluster address: --bind ADDRESS "
            "(or AUTOTAG_BIND_HOST); a wildcard is never used"
        )
    return settings.override(
        host=nimbus_host,
        bind_host=bind,
        advertise_host=advertise_host or settings.services.advertise_host,
        blob_url=settings.services.blob_url
        or f"http://{nimbus_host}:{settings.services.port(settings.services.blob_port)}",
    )


def join(settings: Settings, progress: Callable[[str], None] = print) -> list[Status]:
    """Start this host's Supervisor (and nothing else) for the cluster at
    ``settings.services.host``.

    Its workers reach ZooKeeper, Nimbus, Redis and Postgres there and read photos from its
    blob service, with the token copied into this run directory's secrets/.
    """
    from autotag.ops.nimbus import NimbusClient

    if not settings.blob_token_file.is_file():
        raise ServiceError(
            f"no blob token at {settings.blob_token_file}: copy secrets/ from the first host's "
            "run directory (its workers need it to read photos)"
        )
    NimbusClient(settings).cluster_info()  # a clear "unreachable" now, not a silent Supervisor
    progress(
        f"joining the cluster at {settings.services.host} as {settings.services.local_hostname} "
        f"(binding {settings.services.listen_host}; photos from {settings.services.blob_url})"
    )
    return up(settings, ["supervisor"], progress=progress)


def prepare_database(settings: Settings, progress: Callable[[str], None] = print) -> None:
    """As the owner role, once Postgres answers: schema migrations, the application role's
    rights, and the SQL helpers (dot_product)."""
    from autotag.ops import sql_functions

    with database.connect(settings.services, role="owner", migrate_schema=False) as conn:
        applied = database.migrate(conn)
        if applied:
            progress(f"postgres   migrations applied: {', '.join(map(str, applied))}")
        database.grant_app_role(conn, settings.services.postgres_user)
        sql_functions.install_sql_functions(conn, settings)


def down(
    settings: Settings, names: Sequence[str] | None = None, progress: Callable[[str], None] = print
) -> None:
    """Stop what autotag started, in reverse order (Postgres with a fast, clean shutdown)."""
    for d in reversed(daemons(settings, names)):
        if d.stop():
            progress(f"{d.name:<10} stopped")
        else:
            progress(f"{d.name:<10} was not running")


def status(settings: Settings) -> list[Status]:
    return [d.status() for d in daemons(settings)]


def log_files(settings: Settings) -> dict[str, list[str]]:
    """Every log under the run directory, grouped by daemon / worker."""
    out: dict[str, list[str]] = {}
    for path in sorted(settings.log_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(settings.log_dir)
            out.setdefault(rel.parts[0], []).append(str(path))
    return out
