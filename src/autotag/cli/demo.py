"""`autotag demo`: the main job, from nothing to tagged photos in Postgres.

Starts the cluster, data services and web page, installs the default model, submits the
autotagger topology, uploads the sample photos that ship with scikit-image / scikit-learn,
waits for their tags, prints them, and ends with where to look next: first the web page's
address with its login token.
"""

from __future__ import annotations

import time

import click

from autotag.cli.intake import new_intake
from autotag.config import settings
from autotag.errors import AutotagError
from autotag.learning import samples
from autotag.ops import cluster
from autotag.ops.daemons.postgres import service_file
from autotag.ops.nimbus import NimbusClient
from autotag.ops.topology import submit
from autotag.ops.web_token import load_or_create_token
from autotag.pipeline import intake
from autotag.storage import database, lookups, registry

TOPOLOGY = "autotagger"


@click.command()
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for tags.")
def demo(timeout: int) -> None:
    """Bring everything up, tag the bundled sample photos, show the tags and where to look."""
    s = settings()
    t0 = time.monotonic()
    click.echo("==> cluster: ZooKeeper, Nimbus, Supervisor, Storm UI, Redis, Postgres, web page")
    cluster.up(s, progress=lambda m: click.echo("    " + m))
    click.echo(f"    healthy after {time.monotonic() - t0:.0f}s")

    from autotag.vision.bundle import active_bundle_id
    from autotag.vision.features import onnx_model_path
    from autotag.vision.imagenet import DEFAULT_FAMILY, build_default_bundle

    click.echo("==> model")
    active = active_bundle_id(s.models_dir)
    if active is None or active.startswith(DEFAULT_FAMILY):
        # None yet, or an older default bundle: the current default replaces it.
        build_default_bundle(s.models_dir, onnx_model_path(s.model_dirs))
    bundle_id = active_bundle_id(s.models_dir)
    click.echo(f"    active bundle: {bundle_id}")

    click.echo(f"==> topology {TOPOLOGY}")
    running = {t.name for t in NimbusClient(s).topologies()}
    if TOPOLOGY in running:
        click.echo("    already running")
    else:
        t1 = time.monotonic()
        submit(s, TOPOLOGY)
        click.echo(f"    submitted with sparse submit in {time.monotonic() - t1:.0f}s")

    photos = samples.export(s.run_dir / "samples", samples.package_photos())
    click.echo(f"==> uploading {len(photos)} sample photos from scikit-image and scikit-learn")
    records = intake.upload([str(p) for p in photos], new_intake(s))
    ids = {r.photo_id: r.path for r in records if r.photo_id}

    t2 = time.monotonic()
    with database.connect(s.services) as conn:
        with click.progressbar(length=len(ids), label="    tagging") as bar:
            done = 0
            while True:
                settled = registry.settled_count(conn, list(ids))
                bar.update(settled - done)
                done = settled
                if done >= len(ids):
                    break
                if time.monotonic() - t2 > timeout:
                    raise AutotagError(
                        f"only {done}/{len(ids)} photos tagged after {timeout}s; "
                        "see `autotag cluster logs worker`"
                    )
                time.sleep(1)
        click.echo(f"    {len(ids)} photos done in {time.monotonic() - t2:.0f}s\n")
        for pid, path in sorted(ids.items(), key=lambda kv: kv[1]):
            info = lookups.show(conn, pid)
            if info is None:
                continue
            name = path.rsplit("/", 1)[-1]
            if info.status == "failed":
                click.echo(f"  {name:<28} FAILED: {info.reason}")
                continue
            tags = (
                ", ".join(f"{t} {sc:.2f}" for t, sc in info.tags[:4]) or "(no tag above threshold)"
            )
            click.echo(f"  {name:<28} {tags}")
    # A restarted Nimbus may have moved a persisted topology to a new worker meanwhile.
    cluster.stop_orphan_workers(s, progress=lambda m: click.echo("    " + m))

    token = load_or_create_token(s.run_dir)
    local = s.services.local_bind_host
    web, ui = s.services.port(s.services.http_port), s.services.port(s.services.ui_port)
    click.echo(
        f"""
Where to look next:
  web page          http://{local}:{web}/?token={token}
                    (search, photos, upload, status; `autotag url` prints this again)
  Storm UI          http://{local}:{ui}/  (REST: /api/v1/cluster/summary)
  topologies        autotag topologies      (sparse list works too)
  photos by tag     autotag search cat
  one photo         autotag show {photos[0]}
  counts            autotag stats
  similar photos    autotag similar {photos[0]}
  tag more          autotag upload ~/Pictures     (or drop files in {s.run_dir / "inbox"} and run `autotag inbox`)
  SQL               PGSERVICEFILE={service_file(s)} psql service=autotag
  logs              autotag cluster logs
  stop              autotag cluster down"""
    )


commands = [demo]
