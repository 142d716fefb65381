"""Two simulated hosts (network namespaces made by the test itself): host A runs ZooKeeper,
Nimbus, a Supervisor, Redis, Postgres and the blob service; host B only a Supervisor that
joins it. The autotagger runs with a worker on each; host B's Supervisor and workers are
SIGKILLed mid-run; every photo must end up tagged exactly once. The same photos are drained
with workers on both hosts and then on host A alone, each with where its CPU went (the
figures' values are the lead's to take on an idle machine; here only that both were made,
and that host A alone used no CPU on host B).

It takes several minutes (two clusters' worth of JVMs start on 2 cores), so it runs only when
asked: ``AUTOTAG_TWO_HOSTS=1 pytest tests/integration/test_two_hosts.py``. Needs root.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("AUTOTAG_TWO_HOSTS") != "1",
        reason="several minutes: set AUTOTAG_TWO_HOSTS=1 to run the two-host test",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="ip netns needs root"),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "two_hosts.py"
LINE = re.compile(
    r"^hosts 2, tagged (\d+)/(\d+), lost (\d+), duplicated (\d+), on host B (\d+)$", re.M
)


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_hosts_lose_host_b_and_nothing_else() -> None:
    before = _namespaces()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH),
            "--photos",
            "40",
            "--bulk",
            "20",
            "--rate",
            "3",
            "--timeout",
            "420",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench cleans up on SIGTERM
        out, _ = proc.communicate(timeout=120)
        pytest.fail(f"two_hosts did not finish in 15 minutes:\n{out[-3000:]}")
    match = LINE.search(out)
    assert match, out[-3000:]
    tagged, n, lost, duplicated, on_b = map(int, match.groups())
    assert n == 40
    assert tagged == n and lost == 0 and duplicated == 0, out[-3000:]
    assert on_b > 0, out[-3000:]
    assert proc.returncode == 0
    killed = re.search(r"killed \(SIGKILL\), (\d+) photos to go", out)
    assert killed and int(killed.group(1)) > 0, out[-3000:]  # mid-run, not after the end
    # Side by side: the same 20 photos on both hosts (B read some of them) and on A alone.
    both = re.search(
        r"workers on both hosts +([\d.]+) photos/s +\(20 in [\d.]+ s; host B read (\d+)\)", out
    )
    alone = re.search(r"workers on host A alone +([\d.]+) photos/s +\(20 in [\d.]+ s\)", out)
    assert both and alone, out[-3000:]
    assert float(both.group(1)) > 0 and int(both.group(2)) > 0 and float(alone.group(1)) > 0
    cpu_b = re.findall(r"^  B    (.+?) +(\S+ s \(.+?\)|-) +(\S+ s \(.+?\)|-)$", out, re.M)
    assert any(k.startswith("Python AutotagBolt") and b != "-" for k, b, _ in cpu_b), out[-3000:]
    assert all(a_alone == "-" for _, _, a_alone in cpu_b), out[-3000:]  # B dead by then
    # Everything it created is gone: no namespace left behind.
    assert _namespaces() <= before
