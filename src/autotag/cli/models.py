"""``autotag models``: list, inspect and activate model bundles; build the default one."""

from __future__ import annotations

import json
from typing import Any

import click

from autotag.config import settings
from autotag.errors import ModelError
from autotag.vision import bundle as bundles


def _dataset_name(dataset: Any) -> str:
    if isinstance(dataset, dict):
        return str(dataset.get("name") or dataset.get("id") or "")
    return "" if dataset is None else str(dataset)


def _key_metrics(metrics: dict[str, Any], limit: int = 3) -> str:
    """The first few scalar metrics, formatted short (``top1=0.881 map=0.72``)."""
    parts = []
    for k, v in (metrics or {}).items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
        if len(parts) == limit:
            break
    return " ".join(parts)


@click.group()
def models() -> None:
    """Model bundles: list, show, activate, init-default."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List bundles in the models directory (* marks the active one)."""
    models_dir = settings().models_dir
    rows = [bundles.summarize_manifest(m) for m in bundles.list_bundles(models_dir)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no bundles in {bundles.bundles_root(models_dir)}")
        click.echo("build the default one with: autotag models init-default")
        return
    header = f"  {'ID':34} {'CREATED':20} {'FEATURES':10} {'TAGS':>5}  METRICS (DATASET)"
    click.echo(header)
    for r in rows:
        mark = "*" if r["active"] else " "
        if "error" in r:
            click.echo(f"{mark} {r['id']:34} BROKEN: {r['error']}")
            continue
        metrics = _key_metrics(r["metrics"]) or "-"
        ds = _dataset_name(r["dataset"])
        click.echo(
            f"{mark} {r['id']:34} {str(r['created'] or '-'):20} {str(r['feature_set']):10} "
            f"{r['classes']:>5}  {metrics}{f' ({ds})' if ds else ''}"
        )


@models.command("show")
@click.argument("bundle_id")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def show_cmd(bundle_id: str, as_json: bool) -> None:
    """Show one bundle's manifest (verified against its checksums)."""
    models_dir = settings().models_dir
    b = bundles.load_bundle(models_dir, bundle_id)
    manifest = bundles.read_manifest(b.path or bundles.bundle_dir(models_dir, bundle_id))
    manifest["active"] = bundles.active_bundle_id(models_dir) == b.id
    manifest["path"] = str(b.path)
    if as_json:
        click.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        return
    click.echo(f"id:          {b.id}{'  (active)' if manifest['active'] else ''}")
    click.echo(f"name:        {b.name} v{b.version}")
    click.echo(f"created:     {b.created}")
    click.echo(f"path:        {b.path}")
    click.echo(f"features:    {b.feature_key} (dim {b.dim})")
    click.echo(f"classes:     {b.k}")
    for h in b.heads:
        sample = ", ".join(b.classes[h.start : min(h.stop, h.start + 5)])
        more = "…" if h.stop - h.start > 5 else ""
        click.echo(f"  head {h.group}: {h.activation}, {h.stop - h.start} tags ({sample}{more})")
        if h.source:
            click.echo(f"    source: {h.source}")
    click.echo(f"detectors:   {', '.join(b.detectors) or '-'}")
    click.echo(f"dataset:     {_dataset_name(b.dataset) or '-'}")
    if b.metrics:
        click.echo("metrics:")
        for k, v in b.metrics.items():
            click.echo(f"  {k}: {json.dumps(v)}")
    else:
        click.echo("metrics:     -")
    if b.provenance:
        click.echo("provenance:")
        for k, v in b.provenance.items():
            click.echo(f"  {k}: {v if isinstance(v, str) else json.dumps(v)}")


@models.command("concepts")
@click.argument("bundle_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a list.")
def concepts_cmd(bundle_id: str | None, as_json: bool) -> None:
    """A bundle's concepts (the active one by default): threshold, search words, leaves."""
    models_dir = settings().models_dir
    b = bundles.load_bundle(models_dir, bundle_id) if bundle_id else bundles.load_active(models_dir)
    rows = []
    matrix, thresholds = b.concept_arrays()
    for i, c in enumerate(b.concepts):
        leaves = [b.classes[j] for j in matrix[i].nonzero()[0]]
        thr = float(thresholds[i])
        rows.append({**c.to_json(), "threshold": thr, "leaf_classes": leaves})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"bundle {b.id} has no concepts")
    for r in rows:
        click.echo(
            f"{r['tag']}  (threshold {r['threshold']:.2f}; also: {', '.join(r['words'][1:]) or '-'})"
        )
        click.echo(f"    {len(r['leaf_classes'])} leaves: {', '.join(r['leaf_classes'])}")


@models.command("activate")
@click.argument("bundle_id")
def activate_cmd(bundle_id: str) -> None:
    """Make BUNDLE_ID the active bundle (new topologies and restarted bolts pick it up)."""
    models_dir = settings().models_dir
    if not bundles.bundle_dir(models_dir, bundle_id).is_dir():
        known = ", ".join(m.get("id", "?") for m in bundles.list_bundles(models_dir)) or "none"
        raise ModelError(f"no bundle {bundle_id!r} (known: {known})")
    bundles.set_active(models_dir, bundle_id)
    click.echo(f"active bundle: {bundle_id}")


@models.command("init-default")
@click.option(
    "--backbone",
    type=click.Choice(["lite0", "lite2"]),
    default="lite0",
    show_default=True,
    help="Which shipped EfficientNet-Lite (lite2: feature set cnn-lite2, not activated).",
)
def init_default_cmd(backbone: str) -> None:
    """Build the ImageNet bundle (with its concepts) from a shipped EfficientNet-Lite
    (idempotent)."""
    from autotag.vision.features import LITE0, LITE2, onnx_model_path
    from autotag.vision.imagenet import build_default_bundle

    s = settings()
    models_dir = s.models_dir
    net = LITE2 if backbone == "lite2" else LITE0
    bundle_id = build_default_bundle(models_dir, onnx_model_path(s.model_dirs, net), backbone=net)
    active = bundles.active_bundle_id(models_dir)
    note = " (active)" if active == bundle_id else f" (active bundle stays {active})"
    click.echo(f"default bundle: {bundle_id}{note}")
    click.echo(f"  in {bundles.bundle_dir(models_dir, bundle_id)}")


commands = [models]
