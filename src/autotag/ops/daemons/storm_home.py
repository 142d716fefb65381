"""Assemble a Storm installation (storm.home) from Maven Central artifacts.

Apache publishes Storm's release archive (bin/, lib/, lib-worker/...) only on its download
mirrors, not on Maven Central, so autotag builds the same layout from the Maven artifacts:
lib/ = storm-server and its dependencies (Nimbus, Supervisor, the shaded ZooKeeper server),
lib-worker/ = storm-client and its dependencies (what the Supervisor puts on every worker's
classpath), lib-cli/ = storm-core alone (the classes of Storm's command line, for the
``storm`` command). Maven verifies each download against its published checksum (``-C``). The
result is cached under ~/.cache/autotag so a second clone or CI run reuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from autotag.checksums import file_sha256
from autotag.config import Settings
from autotag.errors import ServiceError

_LOG4J_CLUSTER = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Daemon logging (Nimbus, Supervisor, ZooKeeper): one file per daemon under storm.log.dir. -->
<configuration monitorInterval="60" shutdownHook="disable">
  <properties>
    <property name="pattern">%d{yyyy-MM-dd HH:mm:ss.SSS} %c{1.} %t [%p] %msg%n</property>
  </properties>
  <appenders>
    <RollingFile name="A1" immediateFlush="true"
        fileName="${sys:storm.log.dir}/${sys:logfile.name}"
        filePattern="${sys:storm.log.dir}/${sys:logfile.name}.%i.gz">
      <PatternLayout><pattern>${pattern}</pattern></PatternLayout>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </appenders>
  <loggers>
    <root level="info"><appender-ref ref="A1"/></root>
    <Logger name="org.apache.storm.shade.org.apache.zookeeper" level="warn"/>
  </loggers>
</configuration>
"""

_LOG4J_WORKER = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Worker logging: the worker log, the Python subprocesses' stdout/stderr and the metrics log, per port. -->
<configuration monitorInterval="60" shutdownHook="disable">
  <properties>
    <property name="dir">${sys:workers.artifacts}/${sys:storm.id}/${sys:worker.port}</property>
    <property name="pattern">%d{yyyy-MM-dd HH:mm:ss.SSS} %c{1.} %t [%p] %msg%n</property>
  </properties>
  <appenders>
    <RollingFile name="A1" fileName="${dir}/${sys:logfile.name}"
        filePattern="${dir}/${sys:logfile.name}.%i.gz">
      <PatternLayout charset="UTF-8"><pattern>${pattern}</pattern></PatternLayout>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
      <DefaultRolloverStrategy max="9"/>
    </RollingFile>
    <RollingFile name="STDOUT" fileName="${dir}/${sys:logfile.name}.out"
        filePattern="${dir}/${sys:logfile.name}.out.%i.gz">
      <PatternLayout><pattern>%msg%n</pattern></PatternLayout>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
      <DefaultRolloverStrategy max="4"/>
    </RollingFile>
    <RollingFile name="STDERR" fileName="${dir}/${sys:logfile.name}.err"
        filePattern="${dir}/${sys:logfile.name}.err.%i.gz">
      <PatternLayout><pattern>%msg%n</pattern></PatternLayout>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
      <DefaultRolloverStrategy max="4"/>
    </RollingFile>
    <RollingFile name="METRICS" createOnDemand="true" fileName="${dir}/${sys:logfile.name}.metrics"
        filePattern="${dir}/${sys:logfile.name}.metrics.%i.gz">
      <PatternLayout><pattern>%msg%n</pattern></PatternLayout>
      <Policies><SizeBasedTriggeringPolicy size="2 MB"/></Policies>
      <DefaultRolloverStrategy max="9"/>
    </RollingFile>
  </appenders>
  <loggers>
    <root level="info"><appender-ref ref="A1"/></root>
    <!-- Storm's LoggingMetricsConsumer (queue gauges, read by `autotag queues`), as Storm's own worker.xml. -->
    <Logger name="org.apache.storm.metric.LoggingMetricsConsumer" level="info" additivity="false">
      <appender-ref ref="METRICS"/>
    </Logger>
    <Logger name="STDERR" level="INFO"><appender-ref ref="STDERR"/></Logger>
    <Logger name="STDOUT" level="INFO"><appender-ref ref="STDOUT"/></Logger>
  </loggers>
</configuration>
"""


def java_bin() -> str:
    """The java executable, or a clear error when there is none."""
    home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(home) / "bin" / "java")] if home else []
    candidates.append(shutil.which("java") or "")
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise ServiceError(
        "Java not found: install a JDK 17 (scripts/install-deps.sh does) or set JAVA_HOME"
    )


def _copy_dependencies(pom: Path, version: str, out: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError("Maven (mvn) not found: run scripts/install-deps.sh")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-C",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-Dstorm.version={version}",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise ServiceError(
            f"Maven could not fetch Storm {version} artifacts: {' '.join(tail)[:400]}"
        )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def ensure_storm_home(settings: Settings) -> Path:
    """Build storm.home once (lib/, lib-worker/, log4j2/, extlib*/); reuse it afterwards."""
    home = settings.storm_home
    poms = settings.home / "storm"
    marker = home / ".complete"
    if not marker.is_file():
        home.mkdir(parents=True, exist_ok=True)
        _copy_dependencies(poms / "pom-daemons.xml", settings.storm.storm_version, home / "lib")
        _copy_dependencies(
            poms / "pom-worker.xml", settings.storm.storm_version, home / "lib-worker"
        )
        for sub in ("extlib", "extlib-daemon", "conf", "public"):
            (home / sub).mkdir(exist_ok=True)
        marker.write_text(f"storm {settings.storm.storm_version}\n")
    # The log configs are ours, so refresh them every time (cheap, and picks up edits).
    (home / "log4j2").mkdir(exist_ok=True)
    (home / "log4j2" / "cluster.xml").write_text(_LOG4J_CLUSTER)
    (home / "log4j2" / "worker.xml").write_text(_LOG4J_WORKER)
    return home


_LOG4J_CLI = """<?xml version="1.0" encoding="UTF-8"?>
<!-- The `storm` command's logging: what the command reports, on the terminal, as bin/storm. -->
<configuration shutdownHook="disable">
  <appenders>
    <Console name="OUT" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} %c{1} [%p] %msg%n"/>
    </Console>
  </appenders>
  <loggers>
    <root level="warn"><appender-ref ref="OUT"/></root>
    <Logger name="org.apache.storm.command" level="info"/>
  </loggers>
</configuration>
"""


def ensure_storm_cli(settings: Settings) -> Path:
    """storm.home/lib-cli with storm-core (the classes of Storm's own command line), once."""
    home = ensure_storm_home(settings)
    lib = home / "lib-cli"
    jar = lib / f"storm-core-{settings.storm.storm_version}.jar"
    if not jar.is_file():
        _copy_dependencies(
            settings.home / "storm" / "pom-cli.xml", settings.storm.storm_version, lib
        )
    (home / "log4j2" / "cli.xml").write_text(_LOG4J_CLI)
    return lib


def storm_home_ok(settings: Settings) -> bool:
    return (settings.storm_home / ".complete").is_file()


def ensure_loopback_shim(settings: Settings) -> Path:
    """Build (once) the LD_PRELOAD library that keeps Storm's servers on loopback."""
    src = Path(__file__).resolve().parent.parent / "native" / "loopback_bind.c"
    # Named by its source's checksum: the cache is shared by every checkout on the machine, and
    # one checkout must never run another's (older or newer) build of the shim.
    out = settings.storm.storm_cache / "native" / f"loopback_bind-{file_sha256(src)[:16]}.so"
    if out.is_file():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise ServiceError(
            "a C compiler (gcc) is needed to keep Storm on 127.0.0.1: run scripts/install-deps.sh"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.so")
    result = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src), "-ldl"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"building {src.name} failed: {result.stderr.strip()[:300]}")
    tmp.rename(out)
    return out
