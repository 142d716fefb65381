"""What Storm's queue metrics (`autotag queues`) cost an idle topology: CPU of the topology's
processes with the LoggingMetricsConsumer registered (a tick every N s) and without it.

The topology is resubmitted (``--force``) alternately with ``queue_metrics_secs`` = 0 and N,
left to warm up, then the CPU of every process of the run directory is read from /proc over
an idle spell; rounds alternate so that a drift of the machine's load hits both sides. At the
end the topology is submitted once more with the settings' own value. Run it on an idle
machine against a cluster you may resubmit (`make up`, or a test cluster's run directory).

    python bench/queue_metrics_cost.py                        # 2 rounds, 60 s each side
    python bench/queue_metrics_cost.py --secs 1 --rounds 1    # the cost of a 1 s tick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as bench  # noqa: E402 - bench/pipeline.py: phases, CPU by component

from autotag.config import settings  # noqa: E402
from autotag.ops.daemons.base import wait_for  # noqa: E402
from autotag.ops.nimbus import NimbusClient  # noqa: E402
from autotag.ops.topology import submit  # noqa: E402

ENV = "AUTOTAG_QUEUE_METRICS_SECS"


def resubmit(secs: int) -> None:
    """The topology again, with ``secs`` between queue reports (0: no consumer)."""
    s = settings()
    os.environ[ENV] = str(secs)  # read by topologies/autotagger.py in sparse's process
    submit(s, bench.TOPOLOGY, force=True, wait=5)
    ok = wait_for(lambda: NimbusClient(s).topology(bench.TOPOLOGY).status == "ACTIVE", 120)
    if not ok:
        raise SystemExit(f"bench: {bench.TOPOLOGY} not active after resubmitting")


def idle_cpu(warmup: float, secs: float, settle: float, label: str) -> dict[str, float]:
    """CPU seconds per minute of each process kind over ``secs`` of an idle topology."""
    time.sleep(warmup)
    s = settings()
    with bench.phase(label, settle) as ph:
        before = bench.cpu_by_component(s.run_dir)
        time.sleep(secs)
        used = bench.cpu_delta(before, bench.cpu_by_component(s.run_dir))
    per_min = 60.0 / secs
    out = {k: v * per_min for k, v in used.items()}
    total = sum(out.values())
    print(
        f"  {label:<26} total {total:6.2f} CPU-s/min, worker JVM "
        f"{out.get('worker JVM', 0.0):6.2f}   {ph.mark()}"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--secs", type=int, default=10, help="seconds between queue reports")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle-secs", type=float, default=60, help="measured idle spell")
    ap.add_argument("--warmup", type=float, default=45, help="after each submission (s)")
    ap.add_argument("--settle", type=float, default=120, help="max wait for load < 0.5 (s)")
    args = ap.parse_args()
    configured = settings().storm.queue_metrics_secs
    print(f"{os.cpu_count()} cores; load {bench.load1():.2f}; CPU-s per minute of idle topology")
    sums: dict[int, list[dict[str, float]]] = {0: [], args.secs: []}
    try:
        for r in range(args.rounds):
            for secs in (0, args.secs):
                resubmit(secs)
                label = f"round {r + 1}, " + (f"tick {secs} s" if secs else "no consumer")
                sums[secs].append(idle_cpu(args.warmup, args.idle_secs, args.settle, label))
    finally:
        os.environ.pop(ENV, None)
        resubmit(configured)
    print("\nmean over rounds (CPU-s per minute):")
    kinds = sorted({k for runs in sums.values() for run in runs for k in run})
    print(f"  {'process':<15} {'no consumer':>12} {f'tick {args.secs} s':>12} {'difference':>11}")
    for kind in [*kinds, "total"]:
        a, b = (
            sum(sum(run.values()) if kind == "total" else run.get(kind, 0.0) for run in runs)
            / max(len(runs), 1)
            for runs in (sums[0], sums[args.secs])
        )
        print(f"  {kind:<15} {a:12.2f} {b:12.2f} {b - a:+11.2f}")
    busy = [p.name for p in bench.PHASES if not p.comparable]
    print("\nall phases began on an idle machine" if not busy else f"\nNOT COMPARABLE: {busy}")


if __name__ == "__main__":
    main()
