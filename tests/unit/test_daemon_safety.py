"""Daemon lifecycle safety, without starting the services: a private run dir, pid files
that cannot make `stop` signal a stranger, ports outside the kernel's ephemeral range, a
Supervisor that does not start on taken ports, and a submit that fails fast (with Nimbus's
reason) when the topology cannot be scheduled.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from autotag.config import Settings, load_settings
from autotag.errors import AutotagError, ServiceError
from autotag.ops import cluster, kill_guard, run_dir, workers
from autotag.ops.daemons.base import ephemeral_range, process_start_time, wait_for
from autotag.ops.daemons.redis import RedisDaemon
from autotag.ops.daemons.storm import SupervisorDaemon
from autotag.ops.topology import wait_scheduled

OFFSET = int(os.environ.get("AUTOTAG_TEST_PORT_OFFSET", "20000")) + 29


def settings_for(run: Path, offset: int = OFFSET) -> Settings:
    return load_settings(
        {**os.environ, "AUTOTAG_RUN_DIR": str(run), "AUTOTAG_PORT_OFFSET": str(offset)}
    )


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process autotag did not start (its own session, like a daemon's)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_run_dir_is_private(tmp_path: Path) -> None:
    """Item 3: the run dir is 0700 (0710 with group postgres when root: the server must pass
    through to its data), and so are its folders; an existing 0755 one is tightened."""
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    run_dir.prepare(run)
    mode = stat.S_IMODE(run.stat().st_mode)
    if os.geteuid() == 0:
        assert mode == 0o710 and run.stat().st_gid == run_dir.server_gid()
        assert stat.S_IMODE((run / "data").stat().st_mode) == 0o710
    else:
        assert mode == 0o700
    for sub in ("logs", "pids", "conf", "secrets"):
        assert stat.S_IMODE((run / sub).stat().st_mode) == 0o700, sub


def test_daemons_refuse_a_run_dir_others_can_write(tmp_path: Path) -> None:
    """Item 3: someone else could have planted a pid file, a config or a link in it."""
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)
    s = settings_for(run)
    try:
        with pytest.raises(ServiceError, match=r"writable by other users \(mode 0777\)"):
            RedisDaemon(s).start()
        with pytest.raises(ServiceError, match="writable by other users"):
            cluster.up(s, ["redis"], progress=lambda _m: None)
        assert not (run / "pids").exists()
    finally:
        RedisDaemon(s).stop()


def test_stop_never_signals_a_process_it_did_not_start(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    """Item 14: a pid file whose pid now belongs to another process (pid reuse) is stale."""
    d = RedisDaemon(settings_for(tmp_path / "run"))
    d.pid_file.parent.mkdir(parents=True)
    started = process_start_time(stranger.pid)
    assert started is not None
    d.pid_file.write_text(f"{stranger.pid} {int(started) + 1}\n")  # another process' start
    assert d.pid() is None and d.stop() is False
    d.pid_file.write_text(f"{stranger.pid}\n")  # an old-style pid file: not of this run dir
    assert d.pid() is None and d.stop() is False
    assert stranger.poll() is None, "stop() signalled a process autotag did not start"
    d.pid_file.write_text(f"{stranger.pid} {started}\n")  # the very process we started
    assert d.pid() == stranger.pid and d.stop(timeout=5) is True
    assert stranger.wait(5) is not None


def test_ports_inside_the_ephemeral_range_are_refused(tmp_path: Path) -> None:
    """Item 15: an outgoing connection can take such a port at any moment (a Supervisor died
    at start with "36628 is not available" while `cluster up` called it up)."""
    span = ephemeral_range()
    if span is None:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range")
    low, high = span
    if high - low < 7000:
        pytest.skip(f"ephemeral range {low}-{high} too narrow for this test")
    s = settings_for(tmp_path / "run", offset=low + 100 - 2181)
    try:
        with pytest.raises(
            ServiceError, match=rf"inside the kernel's ephemeral range {low}-{high}"
        ):
            RedisDaemon(s).start()
        with pytest.raises(ServiceError, match=rf"keeps every port below {low}"):
            cluster.preflight(s)
    finally:
        RedisDaemon(s).stop()


@pytest.mark.parametrize("which", ["worker slot", "thrift"])
def test_supervisor_does_not_start_on_taken_ports(tmp_path: Path, which: str) -> None:
    """Item 15: a slot port or its Thrift port held by another program is refused up front,
    instead of a Supervisor that dies after `cluster up` reported it up."""
    s = settings_for(tmp_path / "run")
    port = s.services.port(
        s.services.worker_ports[1] if which == "worker slot" else s.services.supervisor_port
    )
    try:
        with socket.socket() as blocker:
            blocker.bind((s.services.host, port))
            blocker.listen(1)
            with pytest.raises(ServiceError, match=rf"{port}.* already taken by another process"):
                SupervisorDaemon(s).start()
    finally:
        SupervisorDaemon(s).stop()


class FakeNimbus:
    def __init__(self, workers: int) -> None:
        self.workers = workers

    def cluster_info(self) -> SimpleNamespace:
        topo = SimpleNamespace(name="autotagger", num_workers=self.workers, sched_status=None)
        sup = SimpleNamespace(num_workers=2, num_used_workers=2)
        return SimpleNamespace(topologies=[topo], supervisors=[sup])


def test_an_unschedulable_topology_fails_fast_with_nimbus_reason(tmp_path: Path) -> None:
    """Item 15: instead of waiting forever (7 minutes without a word), the submit gives up
    with what Nimbus says: its log line and the free slots."""
    s = settings_for(tmp_path / "run")
    log = s.log_dir / "storm" / "nimbus.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "2026-11-29 12:00:00.000 o.a.s.s.EvenScheduler [WARN] "
        "No available slots for topology: autotagger\n"
    )
    with pytest.raises(ServiceError) as err:
        wait_scheduled(s, "autotagger", timeout=0.3, client=FakeNimbus(workers=0))
    assert "No available slots for topology: autotagger" in str(err.value)
    assert "0 of 2 worker slots free" in str(err.value)
    wait_scheduled(s, "autotagger", timeout=0.3, client=FakeNimbus(workers=1))


HALTED_SUPERVISOR_LOG = """\
2026-12-06 05:15:01.839 o.a.s.d.s.Supervisor main [INFO] Starting supervisor for storm version '2.8.3'.
2026-12-06 05:24:19.400 o.a.s.l.AsyncLocalizer SLOT_26700 [ERROR] Unable to read local file.
java.nio.file.NoSuchFileException: {local}/supervisor/stormdist/autotagger-10-1796534652/stormconf.ser
\tat java.base/sun.nio.fs.UnixException.translateToIOException(UnixException.java:92)
2026-12-06 05:24:19.401 o.a.s.u.Utils SLOT_26700 [ERROR] Halting process: Error when processing an event
java.lang.RuntimeException: Halting process: Error when processing an event
\tat org.apache.storm.utils.Utils.exitProcess(Utils.java:519)
2026-12-06 05:24:19.402 o.a.s.u.Utils ShutdownHook-sleepKill-1s [INFO] Halting after 1 seconds
"""


def test_status_says_storm_halted_a_supervisor_and_why(tmp_path: Path) -> None:
    """A Supervisor that Storm halted (its pid file left behind) is reported as dead with
    Storm's reason, not only "not running"; a halt from before its last start is not."""
    s = settings_for(tmp_path / "run")
    run_dir.prepare(s.run_dir)
    sup = SupervisorDaemon(s)
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    sup.pid_file.write_text(f"{proc.pid} {process_start_time(proc.pid)}\n")
    proc.kill()
    proc.wait()
    sup.storm_log.parent.mkdir(parents=True, exist_ok=True)
    sup.storm_log.write_text(HALTED_SUPERVISOR_LOG.format(local=s.storm_local_dir))

    st = sup.status()
    assert not st.healthy and st.pid is None
    assert st.reason.startswith("not running: it died")
    assert '"Halting process: Error when processing an event"' in st.reason
    assert "NoSuchFileException" in st.reason and "stormconf.ser" in st.reason

    with sup.storm_log.open("a") as fh:
        fh.write(
            "2026-12-06 05:30:00.000 o.a.s.d.s.Supervisor main [INFO] Starting supervisor "
            "for storm version '2.8.3'.\n"
        )
    assert "Halting" not in sup.status().reason

    sup.pid_file.unlink()  # as `autotag cluster down` leaves it
    assert sup.status().reason == "not running"


def test_kill_guard_watches_only_this_hosts_slots(tmp_path: Path) -> None:
    """Executors Nimbus placed on another host's Supervisor (or outside this one's slot
    ports) are not this host's to wait for."""
    s = settings_for(tmp_path / "run")
    here = s.services.local_hostname
    slot = s.services.port(s.services.worker_ports[0])
    executors = [
        SimpleNamespace(host=here, port=slot),
        SimpleNamespace(host=here, port=slot),
        SimpleNamespace(host="elsewhere.example", port=s.services.port(s.services.worker_ports[1])),
        SimpleNamespace(host=here, port=1),
        SimpleNamespace(host=None, port=None),
    ]
    assert kill_guard.local_slots(s, SimpleNamespace(executors=executors)) == {slot}
    assert kill_guard.local_slots(s, SimpleNamespace(executors=None)) == set()


class NimbusWithOneTopology:
    """Nimbus's answer for a topology placed on one slot (host, port)."""

    def __init__(self, host: str, port: int) -> None:
        self.info = SimpleNamespace(
            id="smoke-7-1796538000", executors=[SimpleNamespace(host=host, port=port)]
        )

    def topology_info(self, name: str) -> SimpleNamespace:
        return self.info


def test_kill_guard_waits_for_the_worker_then_refuses(tmp_path: Path) -> None:
    """With this host's Supervisor running and the topology's slot here, the guard waits for
    a worker process of that topology on that slot, and refuses (saying why and how to force
    it) when none starts in time; without a running Supervisor there is nothing to wait for."""
    s = settings_for(tmp_path / "run")
    run_dir.prepare(s.run_dir)
    slot = s.services.port(s.services.worker_ports[0])
    nimbus = NimbusWithOneTopology(s.services.local_hostname, slot)
    topology_id = nimbus.info.id
    said: list[str] = []

    # No Supervisor here: nothing a kill could halt.
    kill_guard.wait_settled(s, "smoke", 0.2, progress=said.append, client=nimbus)  # type: ignore[arg-type]
    assert said == []

    sup = SupervisorDaemon(s)
    stand_in = subprocess.Popen(["sleep", "60"], start_new_session=True)
    worker = None
    try:
        sup.pid_file.write_text(f"{stand_in.pid} {process_start_time(stand_in.pid)}\n")
        with pytest.raises(AutotagError) as refused:
            kill_guard.wait_settled(s, "smoke", 0.6, progress=said.append, client=nimbus)  # type: ignore[arg-type]
        assert f"smoke's worker (slot {slot}) has not started after 1s" in str(refused.value)
        assert "--no-worker-wait" in str(refused.value)
        assert said == [
            "waiting for smoke's worker to start before killing it "
            "(a kill during jar localization halts Storm 2.8.3's Supervisor)"
        ]

        # A worker of another topology on that slot does not count; this topology's does.
        argv = [
            "-c",
            "import time; time.sleep(60)",
            f"-Dstorm.local.dir={s.storm_local_dir}",
            f"-Dworker.port={slot}",
            workers.WORKER_MAIN,
        ]
        worker = subprocess.Popen([sys.executable, *argv, "-Dstorm.id=other-1-1"])
        assert wait_for(lambda: bool(workers.worker_processes(s.storm_local_dir)), 5)
        with pytest.raises(AutotagError):
            kill_guard.wait_settled(s, "smoke", 0.3, client=nimbus)  # type: ignore[arg-type]
        worker.kill()
        worker.wait()
        worker = subprocess.Popen([sys.executable, *argv, f"-Dstorm.id={topology_id}"])
        kill_guard.wait_settled(s, "smoke", 5, client=nimbus)  # type: ignore[arg-type]
    finally:
        for proc in (stand_in, worker):
            if proc is not None:
                proc.kill()
                proc.wait()
