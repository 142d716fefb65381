"""Topology throughput with the photos' own metadata read (issue 26) against without it.

Every photo is a 640 px JPEG carrying what a phone writes (DateTimeOriginal, GPS in one of a
dozen cities, camera make and model) and XMP keywords, so with metadata on each one costs the
EXIF/XMP read, the reverse geocoding, the time zone and the place/time/keyword tags. The
topology is resubmitted with the topology option ``autotag.read_metadata`` (read by the
autotag bolt over the ``read_metadata`` setting) false, then true, alternately for
``--rounds`` rounds; each round uploads its photos while the topology is paused, activates
it and times it from the first photo tagged to the last (bench/pipeline.py's topology_run),
after a warm-up batch that loads the bolts' models. The topology is left resubmitted as it
was found (no option).

Needs the cluster and the topology running (`make up`); it resubmits the topology, so never
run it beside tests or other benchmarks. A phase begun with a 1-minute load average above
0.5 is marked NOT COMPARABLE.

    virtualenvs/autotag/bin/python bench/metadata_throughput.py [--n 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/photo_metadata.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/pipeline.py

from pipeline import TOPOLOGY, load1, pause, phase, topology_run, upload, wait_tagged

from autotag.config import Settings, settings
from autotag.ops import topology
from autotag.ops.nimbus import NimbusClient
from autotag.storage import database
from tests.photo_metadata import exif_for, jpeg_with, xmp_packet

OPTION = "autotag.read_metadata"
PLACES = (
    (48.8584, 2.2945, "+02:00"),  # Paris
    (35.6586, 139.7454, "+09:00"),  # Tokyo
    (-33.8568, 151.2153, None),  # Sydney: the time zone from the position
    (40.7484, -73.9857, "-04:00"),  # New York
    (-33.9249, 18.4241, None),  # Cape Town
    (64.1466, -21.9426, "+00:00"),  # Reykjavik
    (52.5163, 13.3777, None),  # Berlin
    (-22.9519, -43.2105, "-03:00"),  # Rio de Janeiro
    (1.2834, 103.8607, None),  # Singapore
    (37.8199, -122.4783, "-07:00"),  # Golden Gate Bridge
    (30.0444, 31.2357, None),  # Cairo
    (19.4326, -99.1332, None),  # Mexico City
)


def photos(n: int, dest: Path, seed: int) -> list[Path]:
    """``n`` distinct 640 px JPEGs with a phone's EXIF (date, GPS, camera) and XMP keywords."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        lat, lon, offset = PLACES[i % len(PLACES)]
        taken = f"{2015 + i % 8}:{1 + i % 12:02d}:{1 + i % 28:02d} {i % 24:02d}:30:00"
        ex = exif_for(taken, offset, lat, lon, 35.0, "Apple", "iPhone 12", "iPhone 12 back camera")
        p = dest / f"meta-{seed}-{i:05d}.jpg"
        p.write_bytes(jpeg_with(ex, xmp_packet(["holiday", f"trip {i % 7}"]), seed=seed + i))
        out.append(p)
    return out


def resubmit(s: Settings, read_metadata: bool | None) -> None:
    """The topology resubmitted, with the option set (None: as `make up` submits it)."""
    options = [] if read_metadata is None else [f"{OPTION}={str(read_metadata).lower()}"]
    topology.submit(s, TOPOLOGY, force=True, options=options, wait=10)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=300, help="photos per timed run")
    ap.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    ap.add_argument("--warmup", type=int, default=60, help="photos before each timed run")
    ap.add_argument("--settle", type=float, default=180, help="max wait for load < 0.5 (s)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    s = settings()
    nimbus = NimbusClient(s)
    status = nimbus.topology(TOPOLOGY).status
    if status != "ACTIVE":
        raise SystemExit(f"bench: topology {TOPOLOGY} is {status}; run `make up` first")
    seed = int(time.time())
    rates: dict[bool, list[float]] = {False: [], True: []}
    print(f"{args.n} photos of 640 px with EXIF+GPS+XMP per run; load average {load1():.2f}")
    try:
        with tempfile.TemporaryDirectory(prefix="autotag-bench-") as tmp:
            for r in range(args.rounds):
                for on in (False, True):
                    resubmit(s, on)
                    base = seed + 100_000 * (2 * r + on)
                    if args.warmup:  # the new bolts load their models on these
                        warm = photos(args.warmup, Path(tmp) / f"warm-{r}-{on}", base + 50_000)
                        with database.connect(s.services) as conn:
                            wait_tagged(conn, upload(warm, s), args.timeout)
                    batch = photos(args.n, Path(tmp) / f"run-{r}-{on}", base)
                    name = f"round {r + 1}, metadata {'on' if on else 'off'}"
                    with phase(name, args.settle) as ph:
                        run = topology_run(batch, s, nimbus, args.timeout)
                    rates[on].append(run.photos_per_sec)
                    print(
                        f"  {name}: {run.photos_per_sec:6.2f} photos/s sustained, "
                        f"{run.tagged}/{args.n} tagged {ph.mark()}"
                    )
    finally:
        pause(nimbus)
        resubmit(s, None)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"median: metadata off {off:.2f} photos/s, on {on:.2f} photos/s "
        f"({(on - off) / off * 100:+.1f}%; per photo {1000 / on - 1000 / off:+.2f} ms of "
        "topology time)"
    )


if __name__ == "__main__":
    main()
