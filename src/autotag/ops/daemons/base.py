"""A long-running local service that autotag starts, watches and stops.

Each daemon has a pid file and a log file under the run directory, a port it must own,
and a health check. ``stop`` only ever signals a process this project started itself: the
pid file records the process' start time too, so a pid the kernel has since given to another
process is never signalled.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autotag.config import Settings
from autotag.errors import ServiceError
from autotag.ops import run_dir

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ephemeral_range() -> tuple[int, int] | None:
    """The kernel's range of local ports for outgoing connections (None if unknown)."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def check_ports(settings: Settings) -> None:
    """Refuse ports inside the ephemeral range: any outgoing connection may take them first."""
    span = ephemeral_range()
    if span is None:
        return
    low, high = span
    inside = {name: p for name, p in settings.services.ports.items() if low <= p <= high}
    if inside:
        listed = ", ".join(f"{name} {p}" for name, p in sorted(inside.items(), key=lambda x: x[1]))
        raise ServiceError(
            f"port offset {settings.services.port_offset} puts ports inside the kernel's "
            f"ephemeral range {low}-{high} ({EPHEMERAL_RANGE_FILE}), where outgoing connections take their local "
            f"ports, so a service can find its port taken at any moment ({listed}); choose an "
            f"AUTOTAG_PORT_OFFSET that keeps every port below {low}"
        )


def listener_pids(host: str, port: int) -> list[int]:
    """Pids of the processes listening on port (any address); -1 for one we may not see."""
    if shutil.which("ss") is None:
        return [-1] if port_open(host, port) else []
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    pids: list[int] = []
    for line in out.splitlines():
        found = [int(x) for x in re.findall(r"pid=(\d+)", line)]
        pids.extend(found or [-1])
    return pids


def process_start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as dead. But a JVM's main thread can exit (and show
    # as Z) while its other threads still run and hold its ports: only a zombie with no
    # live threads is dead.
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            zombie = fh.read().split(") ", 1)[1][0] == "Z"
        return not zombie or len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return os.path.exists(f"/proc/{pid}")


@dataclass
class Status:
    """What ``autotag cluster status`` prints for one daemon."""

    name: str
    pid: int | None
    port: int | None
    healthy: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "port": self.port,
            "healthy": self.healthy,
            "reason": self.reason,
        }


@dataclass
class Daemon:
    """One service process. Subclasses fill in argv, environment and health."""

    settings: Settings
    name: str = "daemon"
    port: int | None = None
    start_timeout: float = 90.0
    stop_signal: signal.Signals = signal.SIGTERM
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The address this daemon binds: the host's own (cluster) address, which other hosts
        reach; a daemon only this host's users reach overrides it with loopback."""
        return self.settings.services.listen_host

    # -- paths -------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    # -- to override -------------------------------------------------------------------
    def argv(self) -> Sequence[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Create config files / data directories before the first start."""

    def check(self) -> str | None:
        """None when healthy, else the reason it is not."""
        host = self.address
        if self.port is not None and not port_open(host, self.port):
            return f"not accepting connections on {host}:{self.port}"
        return None

    def preexec_user(self) -> Sequence[str]:
        """A prefix such as ``runuser -u postgres --`` for daemons that refuse root."""
        return ()

    # -- lifecycle ---------------------------------------------------------------------
    def pid(self) -> int | None:
        """The daemon's pid if the process in the pid file is alive and is the one we started."""
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid):
            return None
        if len(fields) > 1:
            return pid if process_start_time(pid) == fields[1] else None
        # A pid file from before start times were recorded: trust it only if the process
        # belongs to this run dir.
        return pid if self.owns(pid) else None

    def owns(self, pid: int) -> bool:
        """True if the process belongs to this run dir (its command line or environment)."""
        marker = str(self.settings.run_dir).encode()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        return marker + b"/" in cmdline or b"AUTOTAG_RUN_DIR=" + marker in environ

    def status(self) -> Status:
        pid = self.pid()
        if pid is None:
            reason = "not running"
            if self.port is not None and port_open(self.address, self.port):
                reason = f"not started by autotag, but port {self.port} is taken by another process"
            elif self.pid_file.is_file():  # `stop` removes it: the process ended on its own
                reason = (
                    "not running: it died (not stopped by autotag; `autotag cluster up "
                    f"{self.name}` starts it again); {self.death_note()}"
                )
            return Status(self.name, None, self.port, False, reason)
        problem = self.check()
        return Status(self.name, pid, self.port, problem is None, problem or "ok")

    def start(self, wait: bool = True) -> Status:
        """Start if not running (idempotent); wait until healthy when asked."""
        run_dir.prepare(self.settings.run_dir)
        check_ports(self.settings)
        current = self.status()
        if current.pid is not None:
            if wait:
                self.wait_healthy()
            return self.status()
        if self.port is not None and port_open(self.address, self.port):
            raise ServiceError(
                f"{self.name}: port {self.address}:{self.port} is already taken by another "
                "process (stop it, or set AUTOTAG_PORT_OFFSET to move autotag's ports)"
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        env = dict(os.environ)
        env.update(self.env_extra)
        argv = [*self.preexec_user(), *self.argv()]
        with open(self.log_file, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=str(self.settings.run_dir),
                    start_new_session=True,
                    umask=0o077,  # what a daemon writes is its user's alone
                )
            except FileNotFoundError as exc:
                raise ServiceError(f"{self.name}: cannot run {argv[0]!r}: {exc.strerror}") from exc
        self.pid_file.write_text(f"{proc.pid} {process_start_time(proc.pid)}\n")
        if wait:
            self.wait_healthy(proc)
        return self.status()

    def wait_healthy(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout
        problem: str | None = "starting"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with status {proc.returncode} during start-up; "
                    f"see {self.log_file}: {self.last_log_line()}"
                )
            if self.pid() is None:
                raise ServiceError(f"{self.name} died during start-up; see {self.log_file}")
            problem = self.check()
            if problem is None:
                return
            time.sleep(0.5)
        raise ServiceError(
            f"{self.name} not healthy after {self.start_timeout:.0f}s ({problem}); see {self.log_file}"
        )

    def death_note(self) -> str:
        """What its log last said, for a daemon that died on its own."""
        return f"last in {self.log_file}: {self.last_log_line()}"

    def last_log_line(self) -> str:
        try:
            lines = [
                ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()
            ]
        except OSError:
            return "(no log)"
        return lines[-1][:300] if lines else "(empty log)"

    def stop(self, timeout: float = 30.0, *, group: bool = True) -> bool:
        """Signal the process group we started (or, with group=False, only the daemon — a
        Supervisor restart that leaves its workers running), SIGKILL after timeout.
        True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        if group:
            self._signal(pid, self.stop_signal)
        else:
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            if group:
                self._signal(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll predicate until it is true or timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
