"""`autotag run`: local mode (an in-process LocalCluster running Flux), no cluster needed —
what streamparse's `sparse run` no longer does on Storm 2.x."""

from __future__ import annotations

import subprocess

from autotag.config import Settings, child_env


def test_autotag_run_smoke_topology_locally(test_settings: Settings) -> None:
    s = test_settings
    out = s.run_dir / "smoke" / "smoke.txt"
    out.unlink(missing_ok=True)
    env = child_env(s)
    env["PATH"] = f"{s.venv / 'bin'}:{env['PATH']}"
    result = subprocess.run(
        [str(s.venv / "bin" / "autotag"), "run", "smoke", "-t", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "local mode: smoke" in result.stderr, result.stderr[-2000:]
    lines = out.read_text().splitlines() if out.exists() else []
    assert len(lines) >= 50, f"only {len(lines)} tuples reached the bolt in local mode"
    assert [int(line.split()[0]) for line in lines[:5]] == sorted(
        int(line.split()[0]) for line in lines[:5]
    )
