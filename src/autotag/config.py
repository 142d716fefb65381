"""autotag's settings: typed sections, each handed to the code that reads it.

Order of precedence (last wins): the defaults below, the ``"autotag"`` section of the
project's ``config.json``, then environment variables ``AUTOTAG_<KEY>`` (upper-case key).
Storm workers inherit the Supervisor's environment, so a cluster started with a given
``AUTOTAG_RUN_DIR`` / ``AUTOTAG_PORT_OFFSET`` hands the same settings to every bolt.

Every key (``redis_port``, ``max_attempts``...) belongs to exactly one section, named by its
field: config.json gives it flat (``{"redis_port": 6390}``) or under its section
(``{"services": {"redis_port": 6390}}``), the environment as ``AUTOTAG_REDIS_PORT``. Values
are checked as they are loaded (type, range, unknown keys in config.json); the first bad one
is a ``ConfigError`` naming the key and where it came from, e.g.
``AUTOTAG_REDIS_PORT: 'abc' is not an integer``.

The fronts (CLI, web app, spouts and bolts, ops) read ``settings()`` once and pass down only
the sections a callee needs: ``services`` to whatever opens a connection, ``queue`` with it
to the Redis streams, ``limits`` and ``tagging`` to the tag step, ``writer`` to the DB
writer, ``video`` to video intake and the video bolt.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from autotag.errors import ConfigError

# A check returns None for a good value, else what is wrong with it ("must be at least 1").
Check = Callable[[Any], str | None]


def _key(default: Any, check: Check | None = None) -> Any:
    """A setting's field: its default and the check its loaded value must pass."""
    return field(default=default, metadata={"check": check})


def _derived(default: Any) -> Any:
    """A field that is no key of its own: the loader fills it in from the top-level paths."""
    return field(default=default, metadata={"derived": True})


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def _above(low: float) -> Check:
    return lambda v: None if v > low else f"must be more than {low}"


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "is not a port (1-65535)"


def _ports(v: tuple[int, ...]) -> str | None:
    if not v:
        return "must name at least one port"
    bad = [p for p in v if _port(p)]
    return f"{bad[0]} is not a port (1-65535)" if bad else None


def _named(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _network(v: str) -> str | None:
    if not v:
        return None
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return "is not a network in CIDR form (e.g. 10.20.0.0/24)"
    return None


def _http_url(v: str) -> str | None:
    if not v or v.startswith("http://"):
        return None
    return "must be empty or look like http://HOST:PORT"


# -- the sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSettings:
    """Where this cluster's services (ZooKeeper, Nimbus, Redis, Postgres, the web page, the
    blob service) are reached and bound, and who logs in: what opening a connection needs."""

    host: str = _key("127.0.0.1", _named)
    # The address this host's own servers bind ("" = host): a host's cluster address on a
    # multi-host cluster, 127.0.0.1 on one machine, never a wildcard.
    bind_host: str = ""
    # Redis' and Postgres' own host names where they differ from host (docker-compose: "" = host).
    redis_host: str = ""
    postgres_host: str = ""
    # The private network of a multi-host cluster (CIDR, e.g. 10.20.0.0/24): Postgres accepts
    # SCRAM logins from it ("" = one machine, loopback only).
    cluster_network: str = _key("", _network)
    # The name other hosts reach this host's workers by (storm.local.hostname; "" = bind_host).
    advertise_host: str = ""
    # Where the services that only this host's users reach listen (the web page, the Storm
    # UI): loopback, whatever the cluster address is; never a wildcard.
    local_bind_host: str = _key("127.0.0.1", _named)
    # Base ports; each is shifted by port_offset so a test cluster can run beside the user's.
    port_offset: int = 0
    zookeeper_port: int = _key(2181, _port)
    nimbus_port: int = _key(6627, _port)
    supervisor_port: int = _key(6628, _port)
    ui_port: int = _key(8080, _port)
    worker_ports: tuple[int, ...] = _key((6700, 6701), _ports)
    redis_port: int = _key(6380, _port)
    postgres_port: int = _key(5433, _port)
    http_port: int = _key(8090, _port)
    blob_port: int = _key(8091, _port)
    # Where workers read photo bytes: "" = this host's blob directory; http://HOST:PORT = the
    # intake host's blob service (workers on other hosts).
    blob_url: str = _key("", _http_url)
    postgres_db: str = _key("autotag", _named)
    postgres_user: str = _key("autotag", _named)  # the application role: no superuser, no DDL
    postgres_owner: str = _key("autotag_owner", _named)  # owns the schema: migrations, C functions
    # The run directory, whose secrets/ holds the services' passwords (Settings.run_dir).
    run_dir: Path = _derived(Path("run"))

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
    def redis_address(self) -> str:
        """Where Redis is reached (redis_host where it differs from host)."""
        return self.redis_host or self.host

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"


@dataclass(frozen=True)
class StormSettings:
    """Which Apache Storm runs the cluster, and where its assembled copy is cached."""

    storm_version: str = _key("2.8.3", _named)
    storm_cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "autotag")
    # Seconds between the executors' receive-queue reports to Storm's LoggingMetricsConsumer
    # (read by `autotag queues`); 0 submits the topology without the consumer.
    queue_metrics_secs: int = _key(10, _at_least(0))


@dataclass(frozen=True)
class QueueSettings:
    """The Redis streams that feed the topology, and how often an item may come back."""

    stream: str = _key("autotag:photos", _named)
    dead_letter_stream: str = _key("autotag:dead", _named)
    consumer_group: str = _key("autotag", _named)
    max_attempts: int = _key(3, _at_least(1))
    # Replays that charge no attempt (a crash or timeout while the photo was not being
    # tagged: a neighbour's crash, a DB outage) before they start counting anyway.
    max_uncharged_replays: int = _key(10, _at_least(0))
    # Dead letters kept in Redis (XADD MAXLEN ~); the failed photos stay in Postgres.
    dead_letter_cap: int = _key(10_000, _at_least(1))
    # Video segments: a second stream with the same machinery.
    video_stream: str = _key("autotag:videos", _named)
    video_dead_letter_stream: str = _key("autotag:videos:dead", _named)


@dataclass(frozen=True)
class LimitsSettings:
    """What one untrusted photo may cost (decompression bombs, giant uploads): intake refuses
    files over max_file_bytes, the tag step's decoder enforces the rest."""

    max_file_bytes: int = _key(50 * 1024 * 1024, _at_least(1))
    max_pixels: int = _key(64_000_000, _at_least(1))
    max_dimension: int = _key(20_000, _at_least(1))
    # Memory a decode may take, from the header (pixels x channels x bytes per sample).
    max_decode_bytes: int = _key(512 * 1024 * 1024, _at_least(1))


@dataclass(frozen=True)
class TaggingSettings:
    """How a photo is tagged: features, tag cut-offs, threads and processes."""

    feature_set: str = _key("cnn", _named)
    min_tag_score: float = _key(0.05, _between(0.0, 1.0))
    max_tags: int = _key(10, _at_least(1))
    # Decode JPEGs only as large as the features need (1/2-1/8 scale in the DCT domain).
    reduced_decode: bool = True
    # Threads per tagging process, for ONNX Runtime and OpenCV alike: Storm runs one tagging
    # process per core, so more threads would only oversubscribe the cores.
    tagging_threads: int = _key(1, _at_least(1))
    # Tagging processes (autotag bolt executors) in the topology; 0 = one per core of the
    # host that submits it.
    tagging_processes: int = _key(0, _at_least(0))
    # Learned tags (learning.teach): positive labels before a tag is learned, the precision
    # its threshold aims for, and the estimated precision below which it is not published.
    # learn_assumed_share > 0: the strict estimate on the library sample, assuming a tag
    # covers that share of the library (learner.library_precision; 0 = off; MODELS.md).
    learn_min_examples: int = _key(5, _at_least(2))
    learn_target_precision: float = _key(0.9, _between(0.0, 1.0))
    learn_min_precision: float = _key(0.85, _between(0.0, 1.0))
    learn_assumed_share: float = _key(0.0, _between(0.0, 1.0))
    # Before a new learned tag is published it asks (learning.questions): yes/no on the
    # learn_questions photos nearest its threshold, then a spot check of learn_spot_check
    # random photos it would tag, published only if at least learn_spot_min_yes are right.
    # Both 0: published on the learner's estimates alone (most five-example tags then tag
    # many wrong photos: bench/learned_fewshot.py, MODELS.md).
    learn_questions: int = _key(10, _at_least(0))
    learn_spot_check: int = _key(5, _at_least(0))
    learn_spot_min_yes: int = _key(4, _at_least(0))
    # Face recognition (vision.face_identity, issue 25): descriptors for faces at least
    # face_min_px wide and tall (PhotoPrism's 50 px); a face joins the nearest known person
    # whose reference descriptor is within face_match_distance (dlib's 0.6: 99.67% right on
    # the 300 pairs of ../shared/data/faces, no false match up to 0.65; MODELS.md). Off: faces
    # keep their boxes, nobody is recognised.
    face_recognition: bool = True
    # The whole-body person detector (vision.person_detector, CenterNet: person precision
    # 0.96, recall 0.97 on 642 labelled photos, against 0.83 / 0.76 from faces alone;
    # MODELS.md). It is most of a 640 px photo's tagging time: off, `person` comes from faces.
    person_detection: bool = True
    face_min_px: int = _key(50, _at_least(1))
    face_match_distance: float = _key(0.6, _between(0.0, 2.0))
    # Clustering of the faces nobody is assigned to (pipeline.auto_cluster): the DB writer
    # runs `autotag people cluster` by itself once it has stored face_cluster_after new
    # unassigned faces (0: only by hand). DBSCAN's eps is face_cluster_distance (tighter than
    # the match distance, so chains of look-alikes do not join two people: PhotoPrism's
    # --face-cluster-dist) and its min_samples face_cluster_min_faces (Immich's min_faces):
    # purity 100%, completeness 1.0 at 0.5 / 3 on ../shared/data/faces (MODELS.md).
    face_cluster_after: int = _key(50, _at_least(0))
    face_cluster_distance: float = _key(0.5, _between(0.0, 2.0))
    face_cluster_min_faces: int = _key(3, _at_least(1))
    # Read each photo's own metadata (date taken, GPS, camera, keywords: vision.metadata) and
    # tag its places and times (issue 26). Off only to measure what it costs
    # (bench/metadata_throughput.py); a topology submitted with `-o autotag.read_metadata=...`
    # overrides it for its bolts.
    read_metadata: bool = True
    # Where model files are looked for, in order (Settings.model_dirs); the first holds the
    # bundles and ACTIVE.
    model_dirs: tuple[Path, ...] = _derived(())

    @property
    def models_dir(self) -> Path:
        """Where the bundles and ``ACTIVE`` are (Settings.models_dir)."""
        if not self.model_dirs:
            raise ConfigError("TaggingSettings has no model_dirs (build it through Settings)")
        return self.model_dirs[0]

    @property
    def taggers(self) -> int:
        """How many tagging processes the topology runs."""
        return self.tagging_processes if self.tagging_processes > 0 else os.cpu_count() or 1


@dataclass(frozen=True)
class WriterSettings:
    """The DB writer's batching, commits and retries."""

    db_batch_size: int = _key(64, _at_least(1))
    db_flush_secs: float = _key(1.0, _above(0.0))
    # Least time between two commits of the DB writer when its input goes idle: batches grow
    # under load (a commit per photo costs several times a shared one), a lone photo waits
    # for nothing.
    db_commit_interval_secs: float = _key(0.1, _at_least(0.0))
    # Failed writes of one batch (connection errors, with back-off) before its tuples are
    # failed back to Storm, which replays them.
    db_max_retries: int = _key(12, _at_least(0))


@dataclass(frozen=True)
class VideoSettings:
    """Videos: how they are split and looked at, and what one upload may cost."""

    segment_secs: float = _key(10.0, _above(0.0))
    max_video_bytes: int = _key(2 * 1024 * 1024 * 1024, _at_least(1))
    max_video_secs: float = _key(4 * 3600.0, _above(0.0))
    max_video_segments: int = _key(2000, _at_least(1))
    max_video_pixels: int = _key(3840 * 2160, _at_least(1))
    # Frames analysed: one every video_sample_secs while something moves, one every
    # video_static_secs on still footage, and any frame that cuts to a new scene.
    video_sample_secs: float = _key(0.5, _above(0.0))
    video_static_secs: float = _key(5.0, _above(0.0))
    # A tracked person's crop embedding is kept once per this many seconds (re-identification
    # vs storage: the vectors are most of what a video costs in Postgres).
    video_vector_secs: float = _key(1.0, _above(0.0))
    segment_budget_secs: float = _key(50.0, _above(0.0))


@dataclass(frozen=True)
class TrashSettings:
    """Deleted photos and videos (storage/deletion.py): how long the trash keeps them, and
    how long a permanently deleted id is remembered so a result still in flight is dropped."""

    trash_days: float = _key(30.0, _at_least(0.0))
    tombstone_hours: float = _key(24.0, _at_least(0.0))
    # How often the web service (run with the cluster) expires the trash, as `autotag gc`
    # does: items older than trash_days go for good, old tombstones are forgotten. 0: never.
    trash_expiry_secs: float = _key(3600.0, _at_least(0.0))


# Section name (Settings' field) -> its class.
SECTIONS: dict[str, type] = {
    "services": ServiceSettings,
    "storm": StormSettings,
    "queue": QueueSettings,
    "limits": LimitsSettings,
    "tagging": TaggingSettings,
    "writer": WriterSettings,
    "video": VideoSettings,
    "trash": TrashSettings,
}


@dataclass(frozen=True)
class Settings:
    """The sections, plus the paths everything else is found from (absolute once loaded)."""

    home: Path
    run_dir: Path
    models_dir: Path
    services: ServiceSettings = field(default_factory=ServiceSettings)
    storm: StormSettings = field(default_factory=StormSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    tagging: TaggingSettings = field(default_factory=TaggingSettings)
    writer: WriterSettings = field(default_factory=WriterSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    trash: TrashSettings = field(default_factory=TrashSettings)

    def __post_init__(self) -> None:
        # The sections that need a path carry their own copy of it, kept equal to ours.
        if self.services.run_dir != self.run_dir:
            services = dataclasses.replace(self.services, run_dir=self.run_dir)
            object.__setattr__(self, "services", services)
        if self.tagging.model_dirs != self.model_dirs:
            tagging = dataclasses.replace(self.tagging, model_dirs=self.model_dirs)
            object.__setattr__(self, "tagging", tagging)

    def override(self, **values: Any) -> Settings:
        """A copy with these keys (flat, as in config.json; typed values) changed, each in
        its own section: ``s.override(redis_port=6390, max_attempts=1)``."""
        top: dict[str, Any] = {}
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section = KEYS.get(key)
            if section is None:
                raise TypeError(f"no setting named {key!r}")
            if section:
                by_section.setdefault(section, {})[key] = value
            else:
                top[key] = value
        for name, changes in by_section.items():
            top[name] = dataclasses.replace(getattr(self, name), **changes)
        return dataclasses.replace(self, **top)

    @property
    def secrets_dir(self) -> Path:
        return self.services.secrets_dir

    @property
    def blob_token_file(self) -> Path:
        """The blob service's token: written by the service on the intake host, copied (with
        the rest of secrets/) to a host that joins the cluster."""
        return self.secrets_dir / "blob.password"  # storage.credentials' BLOB

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

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
        return self.storm.storm_cache / f"storm-{self.storm.storm_version}"

    @property
    def model_dirs(self) -> tuple[Path, ...]:
        """Where shipped model files (the ONNX network) are looked for, in order: models_dir,
        then the project's own models/ (so a fresh models_dir needs no copy of them)."""
        return (self.models_dir, self.home / "models")

    @property
    def venv(self) -> Path:
        return self.home / "virtualenvs" / "autotag"


def _keys() -> dict[str, str]:
    """Every key -> its section's name ("" for the top-level paths)."""
    out = {"run_dir": "", "models_dir": ""}
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if not f.metadata.get("derived"):
                out[f.name] = name
    return out


KEYS: dict[str, str] = _keys()


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


# -- loading ---------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _field(key: str) -> tuple[dataclasses.Field[Any], Any]:
    """The dataclass field of a key, and its resolved type."""
    cls = SECTIONS[KEYS[key]] if KEYS[key] else Settings
    hints = typing.get_type_hints(cls)
    return next(f for f in dataclasses.fields(cls) if f.name == key), hints[key]


def _int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return int(raw.strip())
    raise ValueError


def _float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        value = float(raw.strip())
    else:
        raise ValueError
    if not math.isfinite(value):
        raise ValueError
    return value


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, str | int) else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _int_tuple(raw: object) -> tuple[int, ...]:
    if isinstance(raw, str):
        return tuple(int(x) for x in raw.replace(",", " ").split())
    if isinstance(raw, list | tuple):
        return tuple(_int(x) for x in raw)
    raise ValueError


def _str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError


_CONVERTERS: dict[Any, tuple[Callable[[object], Any], str]] = {
    int: (_int, "an integer"),
    float: (_float, "a number"),
    bool: (_bool, "true or false"),
    str: (_str, "a string"),
    Path: (lambda raw: Path(_str(raw)).expanduser(), "a path"),
    tuple[int, ...]: (_int_tuple, "a list of integers"),
}


def convert(key: str, raw: object, where: str) -> Any:
    """A config.json value or an env string, as the key's type; ConfigError naming ``where``
    (``AUTOTAG_REDIS_PORT``) if it is not one, or fails the key's check."""
    f, kind = _field(key)
    to_type, expected = _CONVERTERS[kind]
    try:
        value = to_type(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {raw!r} is not {expected}") from None
    check = f.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where}: {raw!r} {problem}")
    return value


def _config_values(path: Path) -> dict[str, tuple[object, str]]:
    """key -> (raw value, where) from config.json's "autotag" object: flat keys, or objects
    named after a section holding that section's keys. Unknown keys are errors."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    section = doc.get("autotag", {}) if isinstance(doc, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(f'{path}: "autotag" must be an object of settings')
    found: dict[str, tuple[object, str]] = {}

    def take(key: str, value: object, name: str, within: str | None) -> None:
        where = f"{name} in {path}"
        if key not in KEYS or (within is not None and KEYS[key] != within):
            raise ConfigError(f"{where}: unknown setting{_suggest(key, within)}")
        if key in found:
            raise ConfigError(f"{where}: {key} is given twice (also as {found[key][1]})")
        found[key] = (value, where)

    for key, value in section.items():
        if key in SECTIONS and isinstance(value, dict):
            for inner, inner_value in value.items():
                take(inner, inner_value, f"autotag.{key}.{inner}", key)
        else:
            take(key, value, f"autotag.{key}", None)
    return found


def _suggest(key: str, within: str | None) -> str:
    """' (did you mean ...?)' for a mistyped key, or where a misplaced one belongs."""
    if within is not None and KEYS.get(key):
        return f" of section {within} ({key} belongs to {KEYS[key]})"
    names = [k for k, s in KEYS.items() if within is None or s == within]
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_ports(services: ServiceSettings, given: Mapping[str, tuple[object, str]]) -> None:
    """Every port, after the offset, is a port, and no two services share one."""
    names = {
        "zookeeper": "zookeeper_port",
        "nimbus": "nimbus_port",
        "supervisor": "supervisor_port",
        "ui": "ui_port",
        "redis": "redis_port",
        "postgres": "postgres_port",
        "http": "http_port",
        "blobs": "blob_port",
    }
    offset = services.port_offset
    seen: dict[int, str] = {}
    for name, port in services.ports.items():
        key = names.get(name, "worker_ports")
        if not 1 <= port <= 65535:
            culprit = "port_offset" if "port_offset" in given else key
            where = given[culprit][1] if culprit in given else "the defaults"
            raise ConfigError(
                f"{where}: port_offset {offset} puts {key} at {port}, outside 1-65535"
            )
        if port in seen:
            mine, theirs = key, seen[port]
            if mine not in given and theirs in given:
                mine, theirs = theirs, mine
            where = given[mine][1] if mine in given else "the defaults"
            raise ConfigError(f"{where}: {mine} would be port {port}, as {theirs} is")
        seen[port] = key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, config.json's "autotag" section and AUTOTAG_* env vars;
    ConfigError (one line: the key, where it came from, what is wrong) for a bad value."""
    env = dict(os.environ if env is None else env)
    home = Path(env["AUTOTAG_HOME"]).resolve() if env.get("AUTOTAG_HOME") else find_project_root()
    given: dict[str, tuple[object, str]] = {}
    cfg = home / "config.json"
    if cfg.is_file():
        given.update(_config_values(cfg))
    for key in KEYS:
        name = "AUTOTAG_" + key.upper()
        if name in env:
            given[key] = (env[name], name)
    values = {key: convert(key, raw, where) for key, (raw, where) in given.items()}
    # Relative paths are relative to the project.
    for key in ("run_dir", "models_dir"):
        values[key] = (home / values.get(key, key.removesuffix("_dir"))).resolve()
    settings = Settings(home=home, run_dir=home / "run", models_dir=home / "models")
    settings = settings.override(**values)
    _check_ports(settings.services, given)
    return settings


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
            "AUTOTAG_PORT_OFFSET": str(s.services.port_offset),
            "AUTOTAG_STORM_CACHE": str(s.storm.storm_cache),
            "AUTOTAG_MAX_FILE_BYTES": str(s.limits.max_file_bytes),
            "AUTOTAG_HOST": s.services.host,
            "AUTOTAG_BIND_HOST": s.services.bind_host,
            "AUTOTAG_ADVERTISE_HOST": s.services.advertise_host,
            "AUTOTAG_LOCAL_BIND_HOST": s.services.local_bind_host,
            "AUTOTAG_BLOB_URL": s.services.blob_url,
            "AUTOTAG_CLUSTER_NETWORK": s.services.cluster_network,
            # Read once when OpenCV loads: its own pixel limit, matched to ours.
            "OPENCV_IO_MAX_IMAGE_PIXELS": str(s.limits.max_pixels),
        }
    )
    return env
