"""ZooKeeper, Nimbus and Supervisor as local JVM processes, configured for one run directory.

One ``storm.yaml`` per run directory holds every address and path; daemons and the workers
the Supervisor launches all read it (``-Dstorm.conf.file``), and inherit the Supervisor's
environment — which is how workers find ``streamparse_run`` (the project's virtualenv is
first on PATH) and autotag's settings (``AUTOTAG_*``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from autotag.config import Settings, child_env
from autotag.errors import ServiceError
from autotag.ops.daemons.base import Daemon, listener_pids
from autotag.ops.daemons.storm_home import ensure_loopback_shim, java_bin

# Deliberate reliability settings (see RELIABILITY.md): a photo that takes long must not get
# its Python subprocess killed, and a dead worker must be noticed and restarted quickly.
WORKER_HEAP_MB = 768
SUBPROCESS_TIMEOUT_SECS = 120
# How often a worker writes its executors' stats to ZooKeeper, where Nimbus' getTopologyInfo
# reads them (Storm's default, 60 s, leaves the Topology page a minute behind).
EXECUTOR_STATS_SECS = 10
# Storm's JVMs run framework code whose hot paths are short (queues, JSON, pipes): the C1
# compiler alone serves them well, while C2's optimising compiles kept a fresh worker busy
# for minutes, costing about as much CPU as moving the photos (BENCHMARKS.md).
QUICK_JIT = "-XX:TieredStopAtLevel=1"


def storm_yaml(settings: Settings) -> str:
    """The cluster configuration, rendered as YAML (JSON is valid YAML)."""
    s = settings
    conf = {
        "storm.zookeeper.servers": [s.services.host],
        "storm.zookeeper.port": s.services.port(s.services.zookeeper_port),
        "storm.zookeeper.root": "/storm",
        "storm.local.dir": str(s.storm_local_dir),
        "storm.local.hostname": s.services.local_hostname,
        "storm.log.dir": str(s.log_dir / "storm"),
        "nimbus.seeds": [s.services.host],
        "nimbus.thrift.port": s.services.port(s.services.nimbus_port),
        "supervisor.thrift.port": s.services.port(s.services.supervisor_port),
        "supervisor.slots.ports": [s.services.port(p) for p in s.services.worker_ports],
        "ui.host": s.services.local_bind_host,
        "ui.port": s.services.port(s.services.ui_port),
        "worker.childopts": (
            f"-Xmx{WORKER_HEAP_MB}m -XX:+UseG1GC {QUICK_JIT} -Djava.net.preferIPv4Stack=true"
        ),
        "nimbus.childopts": "-Xmx512m",
        "supervisor.childopts": "-Xmx256m",
        "topology.subprocess.timeout.secs": SUBPROCESS_TIMEOUT_SECS,
        "supervisor.worker.timeout.secs": 60,
        "nimbus.task.launch.secs": 120,
        "supervisor.worker.start.timeout.secs": 60,  # a worker that dies while starting is relaunched after this
        "nimbus.monitor.freq.secs": 5,
        "supervisor.monitor.frequency.secs": 3,
        "storm.health.check.dir": str(s.run_dir / "conf" / "healthchecks"),
        "topology.eventlogger.executors": 0,
        "executor.metrics.frequency.secs": EXECUTOR_STATS_SECS,
    }
    return json.dumps(conf, indent=2) + "\n"


def conf_file(settings: Settings) -> Path:
    return settings.run_dir / "conf" / "storm.yaml"


def write_storm_conf(settings: Settings) -> Path:
    path = conf_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "conf" / "healthchecks").mkdir(exist_ok=True)
    (settings.log_dir / "storm").mkdir(parents=True, exist_ok=True)
    path.write_text(storm_yaml(settings))
    return path


class _StormJvm(Daemon):
    """A Storm JVM daemon started straight from storm.home's jars (no bin/storm needed)."""

    main_class = ""
    heap = "-Xmx512m"
    # Small heaps and mostly idle: one GC thread, and no optimising compiler (QUICK_JIT).
    tuning = (QUICK_JIT, "-XX:+UseSerialGC")

    def classpath(self) -> str:
        h = self.settings.storm_home
        return os.pathsep.join(
            [
                f"{h}/lib/*",
                f"{h}/extlib/*",
                f"{h}/extlib-daemon/*",
                str(self.settings.run_dir / "conf"),
            ]
        )

    def jvm_props(self) -> list[str]:
        h = self.settings.storm_home
        return [
            f"-Dstorm.home={h}",
            f"-Dstorm.conf.file={conf_file(self.settings)}",
            f"-Dstorm.log.dir={self.settings.log_dir / 'storm'}",
            f"-Dlogfile.name={self.name}.log",
            f"-Ddaemon.name={self.name}",
            f"-Dlog4j.configurationFile={h}/log4j2/cluster.xml",
            "-Djava.net.preferIPv4Stack=true",
        ]

    @property
    def storm_log(self) -> Path:
        """Storm's own log of this daemon (the log file has only what escapes log4j)."""
        return self.settings.log_dir / "storm" / f"{self.name}.log"

    def death_note(self) -> str:
        """Storm's last word: the "Halting process" line and the exception before it (a
        Supervisor halts on an error in one of its slots, e.g. a topology killed while it
        was localizing it)."""
        try:
            with open(self.storm_log, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 256 * 1024))
                lines = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return super().death_note()
        started = max((i for i, ln in enumerate(lines) if "for storm version" in ln), default=0)
        halts = [i for i, ln in enumerate(lines) if i >= started and "Halting process" in ln]
        if not halts:
            return super().death_note()
        at = halts[-1]
        while at - 1 in halts:  # the log line, then the exception that repeats it
            at -= 1
        cause = next(
            (ln.strip() for ln in reversed(lines[:at]) if "Exception" in ln and ln[:1] != "\t"),
            "",
        )
        said = lines[at].split("] ", 1)[-1].strip()
        after = f" after {cause[:300]}" if cause else ""
        return f'Storm logged "{said}"{after}; see {self.storm_log}'

    def prepare(self) -> None:
        write_storm_conf(self.settings)
        self.env_extra["LD_PRELOAD"] = str(ensure_loopback_shim(self.settings))
        # The shim binds Storm's wildcard servers to this host's own address (workers inherit it).
        self.env_extra["AUTOTAG_BIND_ADDRESS"] = self.settings.services.listen_host

    def argv(self) -> Sequence[str]:
        return [
            java_bin(),
            "-server",
            self.heap,
            *self.tuning,
            *self.jvm_props(),
            "-cp",
            self.classpath(),
            self.main_class,
        ]


class ZooKeeperDaemon(_StormJvm):
    """ZooKeeper from Storm's shaded dependency jar (Maven Central), standalone on loopback."""

    main_class = "org.apache.storm.shade.org.apache.zookeeper.server.ZooKeeperServerMain"
    heap = "-Xmx256m"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings,
            name="zookeeper",
            port=settings.services.port(settings.services.zookeeper_port),
        )

    @property
    def zoo_cfg(self) -> Path:
        return self.settings.run_dir / "conf" / "zoo.cfg"

    def prepare(self) -> None:
        super().prepare()
        data = self.settings.data_dir / "zookeeper"
        data.mkdir(parents=True, exist_ok=True)
        self.zoo_cfg.write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    f"dataDir={data}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.settings.services.listen_host}",
                    "maxClientCnxns=200",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,stat",
                    "autopurge.snapRetainCount=3",
                    "autopurge.purgeInterval=1",
                    "",
                ]
            )
        )

    def argv(self) -> Sequence[str]:
        return [*super().argv(), str(self.zoo_cfg)]

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        try:
            with socket.create_connection(
                (self.settings.services.listen_host, self.port), timeout=2
            ) as sock:
                sock.sendall(b"ruok")
                answer = sock.recv(16)
        except OSError as exc:
            return f"no answer to ruok: {exc}"
        return None if answer == b"imok" else f"answered {answer!r} to ruok"


class NimbusDaemon(_StormJvm):
    main_class = "org.apache.storm.daemon.nimbus.Nimbus"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, name="nimbus", port=settings.services.port(settings.services.nimbus_port)
        )
        self.start_timeout = 120.0

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        from autotag.ops.nimbus import NimbusClient

        try:
            NimbusClient(self.settings).cluster_info()
        except Exception as exc:  # noqa: BLE001 - any Thrift failure means "not healthy yet"
            return f"Thrift getClusterInfo failed: {exc or type(exc).__name__}"
        return None


class SupervisorDaemon(_StormJvm):
    """Up once its Thrift port is bound and Nimbus sees it with all its worker slots."""

    main_class = "org.apache.storm.daemon.supervisor.Supervisor"
    heap = "-Xmx256m"

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings,
            name="supervisor",
            port=settings.services.port(settings.services.supervisor_port),
        )
        self.start_timeout = 120.0
        env = child_env(settings)
        venv_bin = str(settings.venv / "bin")
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.env_extra = env

    @property
    def slot_ports(self) -> list[int]:
        return [self.settings.services.port(p) for p in self.settings.services.worker_ports]

    def prepare(self) -> None:
        super().prepare()
        # A slot port another program holds would make every worker launched there die;
        # this run's own workers (a Supervisor restart leaves them running) may hold theirs.
        foreign = [
            p
            for p in self.slot_ports
            if any(
                not self.owns(pid) for pid in listener_pids(self.settings.services.listen_host, p)
            )
        ]
        if foreign:
            raise ServiceError(
                f"supervisor: worker slot port(s) {', '.join(map(str, foreign))} already taken by "
                "another process (stop it, or set AUTOTAG_PORT_OFFSET to move autotag's ports)"
            )

    def check(self) -> str | None:
        problem = super().check()
        if problem:
            return problem
        from autotag.ops.nimbus import NimbusClient

        try:
            info = NimbusClient(self.settings).cluster_info()
        except Exception as exc:  # noqa: BLE001
            return f"cannot ask Nimbus whether it registered: {exc or type(exc).__name__}"
        if not info.supervisors:
            return "not registered with Nimbus yet"
        slots = sum(int(sv.num_workers or 0) for sv in info.supervisors)
        if slots < len(self.slot_ports):
            return f"registered with {slots} of {len(self.slot_ports)} worker slots"
        return None
