"""All of autotag's settings in one place.

Order of precedence (last wins): the defaults below, the ``"autotag"`` section of the
project's ``config.json``, then environment variables ``AUTOTAG_<KEY>`` (upper-case key).
Storm workers inherit the Supervisor's environment, so a cluster started with a given
``AUTOTAG_RUN_DIR`` / ``AUTOTAG_PORT_OFFSET`` hands the same settings to every bolt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def find_project_root() -> Path:
    """The checkout that holds config.json and project.clj (``AUTOTAG_HOME`` wins)."""
    env = os.environ.get("AUTOTAG_HOME")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "project.clj").is_file() and (candidate / "config.json").is_file():
                return candidate
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Settings:
    """Every tunable of autotag. Paths are absolute once loaded."""

    home: Path
    run_dir: Path
    models_dir: Path
    # Where this cluster's services (ZooKeeper, Nimbus, Redis, Postgres, blobs) are reached.
    host: str = "127.0.0.1"
    # The address this host's own servers bind ("" = host): a host's cluster address on a
    # multi-host cluster, 127.0.0.1 on one machine, never a wildcard.
    bind_host: str = ""
    # Redis' and Postgres' own host names where they differ from host (docker-compose: "" = host).
    redis_host: str = ""
    postgres_host: str = ""
    # The private network of a multi-host cluster (CIDR, e.g. 10.20.0.0/24): Postgres accepts
    # SCRAM logins from it ("" = one machine, loopback only).
    cluster_network: str = ""
    # The name other hosts reach this host's workers by (storm.local.hostname; "" = bind_host).
    advertise_host: str = ""
    # Where the services that only this host's users reach listen (the web page, the Storm
    # UI): loopback, whatever the cluster address is; never a wildcard.
    local_bind_host: str = "127.0.0.1"
    # Base ports; each is shifted by port_offset so a test cluster can run beside the user's.
    port_offset: int = 0
    zookeeper_port: int = 2181
    nimbus_port: int = 6627
    supervisor_port: int = 6628
    ui_port: int = 8080
    worker_ports: tuple[int, ...] = (6700, 6701)
    redis_port: int = 6380
    postgres_port: int = 5433
    http_port: int = 8090
    blob_port: int = 8091
    # Where workers read photo bytes: "" = this host's blob directory; http://HOST:PORT = the
    # intake host's blob service (workers on other hosts).
    blob_url: str = ""
    postgres_db: str = "autotag"
    postgres_user: str = "autotag"  # the application role: no superuser, no DDL
    postgres_owner: str = "autotag_owner"  # owns the schema: migrations, dot_product (C)
    storm_version: str = "2.8.3"
    storm_cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "autotag")
    # Queue and topology behaviour.
    stream: str = "autotag:photos"
    dead_letter_stream: str = "autotag:dead"
    consumer_group: str = "autotag"
    max_attempts: int = 3
    # Replays that charge no attempt (a crash or timeout while the photo was not being
    # tagged: a neighbour's crash, a DB outage) before they start counting anyway.
    max_uncharged_replays: int = 10
    # Dead letters kept in Redis (XADD MAXLEN ~); the failed photos stay in Postgres.
    dead_letter_cap: int = 10_000
    # Input limits (decompression bombs, giant uploads).
    max_file_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_dimension: int = 20_000
    # Memory a decode may take, from the header (pixels x channels x bytes per sample).
    max_decode_bytes: int = 512 * 1024 * 1024
    # Tagging.
    feature_set: str = "cnn"
    min_tag_score: float = 0.05
    max_tags: int = 10
    # Decode JPEGs only as large as the features need (1/2-1/8 scale in the DCT domain).
    reduced_decode: bool = True
    # Face recognition (vision.face_identity, issue 25): descriptors for faces at least
    # face_min_px wide and tall (PhotoPrism's 50 px); a face joins the nearest known person
    # whose reference descriptor is within face_match_distance (dlib's 0.6: 99.67% right on
    # the 300 pairs of ../shared/data/faces, no false match up to 0.65; MODELS.md). Off: faces
    # keep their boxes, nobody is recognised.
    face_recognition: bool = True
    face_min_px: int = 50
    face_match_distance: float = 0.6
    # Threads per tagging process, for ONNX Runtime and OpenCV alike: Storm runs one tagging
    # process per core, so more threads would only oversubscribe the cores.
    tagging_threads: int = 1
    # Tagging processes (autotag bolt executors) in the topology; 0 = one per core of the
    # host that submits it.
    tagging_processes: int = 0
    # DB writer batching.
    db_batch_size: int = 64
    db_flush_secs: float = 1.0
    # Least time between two commits of the DB writer when its input goes idle: batches grow
    # under load (a commit per photo costs several times a shared one), a lone photo waits
    # for nothing.
    db_commit_interval_secs: float = 0.1
    # Failed writes of one batch (connection errors, with back-off) before its tuples are
    # failed back to Storm, which replays them.
    db_max_retries: int = 12
    # Video: a second stream of segments, and what one upload may cost before it is refused.
    video_stream: str = "autotag:videos"
    video_dead_letter_stream: str = "autotag:videos:dead"
    segment_secs: float = 10.0
    max_video_bytes: int = 2 * 1024 * 1024 * 1024
    max_video_secs: float = 4 * 3600.0
    max_video_segments: int = 2000
    max_video_pixels: int = 3840 * 2160
    # Frames analysed: one every video_sample_secs while something moves, one every
    # video_static_secs on still footage, and any frame that cuts to a new scene.
    video_sample_secs: float = 0.5
    video_static_secs: float = 5.0
    # A tracked person's crop embedding is kept once per this many seconds (re-identification
    # vs storage: the vectors are most of what a video costs in Postgres).
    video_vector_secs: float = 1.0
    segment_budget_secs: float = 50.0

    def port(self, base: int) -> int:
        return base + self.port_offset

    @property
    def ports(self) -> dict[str, int]:
        """Every port autotag binds, after the offset: name -> port."""
        named = {
            "zookeeper": self.zookeeper_port,
            "nimbus": self.nimbus_port,
            "supervisor": self.supervisor_port,
            "ui": self.ui_port,
            "redis": self.redis_port,
            "postgres": self.postgres_port,
            "http": self.http_port,
            "blobs": self.blob_port,
        }
        out = {k: self.port(v) for k, v in named.items()}
        for i, p in enumerate(self.worker_ports):
            out[f"worker{i}"] = self.port(p)
        return out

    @property
    def listen_host(self) -> str:
        """The address this host's servers bind."""
        return self.bind_host or self.host

    @property
    def local_hostname(self) -> str:
        """The address this host advertises to the others (Storm's storm.local.hostname)."""
        return self.advertise_host or self.listen_host

    @property
    def postgres_address(self) -> str:
        """Where Postgres is reached (postgres_host where it differs from host)."""
        return self.postgres_host or self.host

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"

    @property
    def blob_token_file(self) -> Path:
        """The blob service's token: written by the service on the intake host, copied (with
        the rest of secrets/) to a host that joins the cluster."""
        return self.secrets_dir / "blob.password"  # storage.credentials' BLOB

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def taggers(self) -> int:
        """How many tagging processes the topology runs."""
        return self.tagging_processes if self.tagging_processes > 0 else os.cpu_count() or 1

    @property
    def storm_local_dir(self) -> Path:
        """Storm's storm.local.dir: the Supervisor's and workers' state."""
        return self.run_dir / "storm-local"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def storm_home(self) -> Path:
        return self.storm_cache / f"storm-{self.storm_version}"

    @property
    def model_dirs(self) -> tuple[Path, ...]:
        """Where shipped model files (the ONNX network) are looked for, in order: models_dir,
        then the project's own models/ (so a fresh models_dir needs no copy of them)."""
        return (self.models_dir, self.home / "models")

    @property
    def venv(self) -> Path:
        return self.home / "virtualenvs" / "autotag"


_PATH_KEYS = {"run_dir", "models_dir", "storm_cache", "home"}


def _coerce(name: str, raw: object, current: object) -> object:
    """Turn a config.json value or an env string into the field's type."""
    if name in _PATH_KEYS:
        return Path(str(raw)).expanduser()
    if isinstance(current, tuple):
        if isinstance(raw, str):
            return tuple(int(x) for x in raw.replace(",", " ").split())
        return tuple(int(x) for x in raw)  # type: ignore[union-attr]
    if isinstance(current, bool):
        return str(raw).lower() in ("1", "true", "yes")
    if isinstance(current, int):
        return int(raw)  # type: ignore[arg-type]
    if isinstance(current, float):
        return float(raw)  # type: ignore[arg-type]
    return str(raw)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from defaults, config.json's "autotag" section and AUTOTAG_* env vars."""
    env = dict(os.environ if env is None else env)
    home = Path(env["AUTOTAG_HOME"]).resolve() if env.get("AUTOTAG_HOME") else find_project_root()
    base = Settings(home=home, run_dir=home / "run", models_dir=home / "models")
    overrides: dict[str, object] = {}
    cfg = home / "config.json"
    if cfg.is_file():
        section = json.loads(cfg.read_text()).get("autotag", {})
        for key, value in section.items():
            if key in {f.name for f in dataclasses.fields(Settings)}:
                overrides[key] = value
    for f in dataclasses.fields(Settings):
        key = "AUTOTAG_" + f.name.upper()
        if key in env and f.name != "home":
            overrides[f.name] = env[key]
    typed = {k: _coerce(k, v, getattr(base, k)) for k, v in overrides.items()}
    settings = dataclasses.replace(base, **typed)
    # Relative paths in config.json are relative to the project.
    fixed = {}
    for k in ("run_dir", "models_dir"):
        p = getattr(settings, k)
        if not p.is_absolute():
            fixed[k] = (home / p).resolve()
    return dataclasses.replace(settings, **fixed) if fixed else settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (cached; tests call load_settings directly)."""
    return load_settings()


def child_env(s: Settings) -> dict[str, str]:
    """Environment that hands these settings to a child process (daemons, workers, tests)."""
    env = dict(os.environ)
    env.update(
        {
            "AUTOTAG_HOME": str(s.home),
            "AUTOTAG_RUN_DIR": str(s.run_dir),
            "AUTOTAG_MODELS_DIR": str(s.models_dir),
            "AUTOTAG_PORT_OFFSET": str(s.port_offset),
            "AUTOTAG_STORM_CACHE": str(s.storm_cache),
            "AUTOTAG_MAX_FILE_BYTES": str(s.max_file_bytes),
            "AUTOTAG_HOST": s.host,
            "AUTOTAG_BIND_HOST": s.bind_host,
            "AUTOTAG_ADVERTISE_HOST": s.advertise_host,
            "AUTOTAG_LOCAL_BIND_HOST": s.local_bind_host,
            "AUTOTAG_BLOB_URL": s.blob_url,
            "AUTOTAG_CLUSTER_NETWORK": s.cluster_network,
            # Read once when OpenCV loads: its own pixel limit, matched to ours.
            "OPENCV_IO_MAX_IMAGE_PIXELS": str(s.max_pixels),
        }
    )
    return env
