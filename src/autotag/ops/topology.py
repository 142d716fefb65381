"""Submitting and running topologies the streamparse way, against autotag's own cluster.

``submit`` runs streamparse's own ``sparse submit`` with a config.json whose Nimbus address
matches these settings (so a test cluster on shifted ports works like the user's).
``run_local`` is the working local mode streamparse's ``sparse run`` lost on Storm 2.x: an
in-process LocalCluster (``storm local``'s class) running Flux on the topology's YAML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotag.config import Settings, child_env
from autotag.errors import AutotagError, ServiceError
from autotag.ops import kill_guard
from autotag.ops.daemons.storm_home import ensure_storm_home, java_bin
from autotag.ops.kill_guard import DEFAULT_WORKER_TIMEOUT

FLUX_JAR = "flux-core-{v}.jar"


def sparse_env(settings: Settings) -> dict[str, str]:
    """Environment for `sparse`: the venv first on PATH; LEIN_ROOT when running as root."""
    env = child_env(settings)
    env["PATH"] = str(settings.venv / "bin") + os.pathsep + env.get("PATH", "")
    if os.geteuid() == 0:
        env.setdefault("LEIN_ROOT", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def derived_config(settings: Settings) -> Path:
    """config.json with the local environment pointed at this run's Nimbus."""
    base = json.loads((settings.home / "config.json").read_text())
    env = base["envs"]["local"]
    env["nimbus"] = (
        f"{settings.services.host}:{settings.services.port(settings.services.nimbus_port)}"
    )
    log_dir = settings.log_dir / "streamparse"
    log_dir.mkdir(parents=True, exist_ok=True)  # streamparse components die if it is missing
    env["log"] = {**env.get("log", {}), "path": str(log_dir)}
    out = settings.run_dir / "conf" / "sparse-config.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(base, indent=2))
    return out


def topology_names(settings: Settings) -> list[str]:
    return sorted(
        p.stem for p in (settings.home / "topologies").glob("*.py") if not p.name.startswith("_")
    )


def _check_name(settings: Settings, name: str) -> None:
    names = topology_names(settings)
    if name not in names:
        raise AutotagError(f"no topology file topologies/{name}.py (have: {', '.join(names)})")


def submit(
    settings: Settings,
    name: str,
    *,
    force: bool = False,
    options: list[str] | None = None,
    wait: int | None = None,
    schedule_timeout: float = 60.0,
    worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> str:
    """`sparse submit -n NAME` against this run's Nimbus; returns sparse's output once Nimbus
    has given the topology its workers (ServiceError with Nimbus's reason if it cannot).

    With ``force``, a running NAME is replaced once its worker runs here (kill_guard: sparse
    kills it first, which must not halt the Supervisor); ``worker_timeout=None`` skips that."""
    _check_name(settings, name)
    from autotag.ops.nimbus import NimbusClient

    client = NimbusClient(settings)
    running = {t.name for t in client.topologies()}
    if name in running and not force:
        raise AutotagError(
            f"a topology named {name!r} is already running (kill it, or use --force)"
        )
    if name in running and worker_timeout is not None:
        kill_guard.wait_settled(settings, name, worker_timeout, progress=progress, client=client)
    cmd = ["sparse", "submit", "-n", name, "--config", str(derived_config(settings))]
    if force:
        cmd.append("--force")
        if wait is not None:
            cmd += ["--wait", str(wait)]
    for opt in options or []:
        cmd += ["-o", opt]
    proc = subprocess.run(
        cmd, cwd=settings.home, env=sparse_env(settings), capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or name not in {t.name for t in client.topologies()}:
        tail = " | ".join(line for line in out.strip().splitlines()[-4:] if line.strip())
        raise AutotagError(f"sparse submit {name} failed: {tail[:500]}")
    wait_scheduled(settings, name, schedule_timeout, client=client)
    return out


def wait_scheduled(
    settings: Settings, name: str, timeout: float = 60.0, *, client: Any = None
) -> None:
    """Return once Nimbus has assigned the topology workers; a topology Nimbus cannot place
    (no free slots, a dead Supervisor) is a ServiceError with Nimbus's reason after timeout,
    instead of a wait that never ends."""
    if client is None:
        from autotag.ops.nimbus import NimbusClient

        client = NimbusClient(settings)
    deadline = time.monotonic() + timeout
    while True:
        info = client.cluster_info()
        summary = next((t for t in info.topologies if t.name == name), None)
        if summary is None:
            raise AutotagError(f"no running topology named {name!r}")
        if summary.num_workers > 0:
            return
        if time.monotonic() >= deadline:
            reason = _unscheduled_reason(settings, name, summary, info)
            raise ServiceError(f"Nimbus has not scheduled {name} after {timeout:.0f}s: {reason}")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _unscheduled_reason(settings: Settings, name: str, summary: Any, info: Any) -> str:
    """What Nimbus says: its scheduler status, the free slots, its log's last word on it."""
    parts = [str(summary.sched_status).strip()] if getattr(summary, "sched_status", None) else []
    total = sum(int(sv.num_workers or 0) for sv in info.supervisors)
    used = sum(int(sv.num_used_workers or 0) for sv in info.supervisors)
    parts.append(
        f"{len(info.supervisors)} supervisor(s) with {total - used} of {total} worker slots free"
    )
    log = settings.log_dir / "storm" / "nimbus.log"
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 256 * 1024))
            tail = fh.read().decode(errors="replace").splitlines()
    except OSError:
        tail = []
    said = [line for line in tail if name in line and ("slot" in line or "chedul" in line)]
    if said:
        parts.append(f"nimbus.log: {said[-1].strip()[-300:]}")
    return "; ".join(parts) + " (`autotag cluster status` shows which daemon is down)"


def ensure_flux(settings: Settings) -> Path:
    """Flux's jar in storm.home/extlib (fetched without its parent POM, which Central lacks)."""
    home = ensure_storm_home(settings)
    jar = home / "extlib" / FLUX_JAR.format(v=settings.storm.storm_version)
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError("Maven (mvn) not found: run scripts/install-deps.sh")
    cmd = [
        mvn,
        "-q",
        "-B",
        "-C",
        "dependency:copy",
        f"-Dartifact=org.apache.storm:flux-core:{settings.storm.storm_version}:jar",
        f"-DoutputDirectory={jar.parent}",
        "-Dtransitive=false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0 or not jar.is_file():
        raise ServiceError(
            f"could not fetch Flux {settings.storm.storm_version}: {proc.stdout[-300:]}"
        )
    return jar


def build_jar(settings: Settings) -> Path:
    """The same resources-only jar `sparse submit` builds (via streamparse's own code)."""
    code = "from streamparse.cli.jar import jar_for_deploy; print('JAR=' + jar_for_deploy(simple_jar=True))"
    proc = subprocess.run(
        [str(settings.venv / "bin" / "python"), "-c", code],
        cwd=settings.home,
        env=sparse_env(settings),
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("JAR="):
            return Path(line[4:])
    raise AutotagError(f"building the topology jar failed: {(proc.stdout + proc.stderr)[-400:]}")


def flux_yaml(settings: Settings, name: str, out_dir: Path) -> Path:
    """Flux YAML for topologies/NAME.py, as streamparse renders it."""
    code = (
        "import json, sys\n"
        "from streamparse.util import get_topology_from_file\n"
        f"cls = get_topology_from_file('topologies/{name}.py')\n"
        f"d = cls.to_flux_dict({name!r})\n"
        "d['config'] = {'topology.workers': 1, 'topology.max.spout.pending': 64}\n"
        "json.dump(d, sys.stdout, indent=1)\n"  # JSON is YAML: Flux reads it as is
    )
    proc = subprocess.run(
        [str(settings.venv / "bin" / "python"), "-c", code],
        cwd=settings.home,
        env=sparse_env(settings),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise AutotagError(f"could not render topologies/{name}.py: {proc.stderr.strip()[-400:]}")
    path = out_dir / f"{name}.yaml"
    path.write_text(proc.stdout)
    return path


def run_local(settings: Settings, name: str, seconds: int) -> int:
    """Run topologies/NAME.py in an in-process LocalCluster for SECONDS; returns exit status."""
    _check_name(settings, name)
    flux = ensure_flux(settings)
    jar = build_jar(settings)
    work = settings.run_dir / "local" / name
    work.mkdir(parents=True, exist_ok=True)
    yaml_path = flux_yaml(settings, name, work)
    h = settings.storm_home
    classpath = os.pathsep.join([f"{h}/lib/*", str(flux), str(jar)])
    log_dir = settings.log_dir / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        java_bin(),
        "-Xmx1g",
        f"-Dstorm.home={h}",
        f"-Dstorm.log.dir={log_dir}",
        f"-Dlogfile.name={name}.log",
        f"-Dlog4j.configurationFile={h}/log4j2/cluster.xml",
        f"-Dstorm.local.sleeptime={seconds}",
        f"-Dstorm.jar={jar}",
        "-Djava.net.preferIPv4Stack=true",
        "-cp",
        classpath,
        "org.apache.storm.LocalCluster",
        "org.apache.storm.flux.Flux",
        "--no-splash",
        str(yaml_path),
    ]
    env = sparse_env(settings)
    print(f"local mode: {name} for {seconds}s; log {log_dir / (name + '.log')}", file=sys.stderr)
    return subprocess.run(cmd, cwd=work, env=env).returncode
