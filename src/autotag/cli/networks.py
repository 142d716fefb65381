"""``autotag train-cnn`` (a network on Fashion-MNIST; needs train.txt) and ``autotag
train-mlp`` (an MLP head on cached feature vectors; NumPy only): both make softmax bundles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autotag.cli.training import (
    FEATURES,
    _cache_root,
    _dir_opt,
    _labels,
    _print_summary,
    progress_bars,
)
from autotag.learning.networks import ARCHITECTURES
from autotag.pipeline.tag_step import decode_limits, feature_options
from autotag.vision.bundle import ModelBundle


@click.command("train-cnn")
@click.option(
    "--model", "arch", type=click.Choice(list(ARCHITECTURES)), default="lenet5", show_default=True
)
@click.option("--procs", type=int, default=1, show_default=True, help="Training processes.")
@click.option("--epochs", type=int, default=15, show_default=True, help="At most.")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Global batch.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="AdamW peak rate.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--patience", type=int, default=4, show_default=True, help="Early stopping.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--augment", is_flag=True, help="Random left-right flips and shifts of up to 2 px (training)."
)
@click.option(
    "--until-epoch",
    type=int,
    help="Stop after epoch N of --epochs (the rate schedule still spans --epochs) and keep the "
    "best epoch so far; with --resume, finishes a stopped run from its checkpoint.",
)
@click.option("--limit", type=int, help="Only the first N training images.")
@click.option("--test-limit", type=int, help="Only the first N test images.")
@click.option(
    "--source",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Fashion-MNIST IDX folder [/usr/share/datasets/fashion-mnist].",
)
@click.option("--work-dir", type=click.Path(path_type=Path), help="[run/train-cnn/NAME]")
@click.option("--resume", is_flag=True, help="Continue from the work dir's checkpoint.")
@click.option("--name", help="Bundle name (id = NAME-<UTC time>).")
@click.option("--activate", is_flag=True, help="Make the new bundle the active one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train_cnn(
    arch: str,
    procs: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    val_fraction: float,
    patience: int,
    seed: int,
    augment: bool,
    until_epoch: int | None,
    limit: int | None,
    test_limit: int | None,
    source: Path | None,
    work_dir: Path | None,
    resume: bool,
    name: str | None,
    activate: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a network (data-parallel over --procs processes) into a bundle.

    The network's penultimate layer becomes feature set net:<bundle id> and its last layer
    the bundle's softmax head; the test set is all 10,000 Fashion-MNIST test images.

    \b
    autotag train-cnn --model lenet5 --procs 2 --activate
    autotag train-cnn --model small-cnn --epochs 30 --augment --resume
    """
    from autotag.config import settings
    from autotag.learning.datasets import FASHION_MNIST_DIR
    from autotag.learning.network_workflow import NetworkRequest, train_network

    s = settings()
    label = name or f"fashion-mnist-{arch}"
    request = NetworkRequest(
        arch=arch,
        work_dir=work_dir or s.run_dir / "train-cnn" / label,
        source=source or FASHION_MNIST_DIR,
        limit=limit,
        test_limit=test_limit,
        procs=procs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        val_fraction=val_fraction,
        patience=patience,
        seed=seed,
        augment=augment,
        until_epoch=until_epoch,
        resume=resume,
        name=name,
        activate=activate,
        progress=not quiet and not as_json,
    )
    bundle, result = train_network(request, s.models_dir)
    m = bundle.metrics
    if _echo_bundle(bundle, activate, as_json):
        return
    click.echo(
        f"  {arch}: test top-1 {m['test_top1']:.4f} on {m['test_images']} images; validation "
        f"{m['validation_top1']:.4f} (best epoch {m['best_epoch']} of {m['epochs_run']})"
    )
    click.echo(f"  {m['seconds_per_epoch']:.1f} s per epoch with {procs} process(es)")
    d, x = m["onnx_max_abs_diff"], m["float64_max_abs_diff"]
    click.echo(
        f"  ONNX vs JAX max |diff|: probabilities {d['probabilities']:.2g}, "
        f"embedding {d['embedding']:.2g}, logits {d['logits']:.2g} (vs float64: JAX "
        f"{x['jax_logits']:.2g}, ONNX {x['onnx_logits']:.2g}; |logits| up to {x['max_abs_logit']:.3g})"
    )
    close = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in m["onnx_allclose_1e-5"].items())
    click.echo(f"  ONNX allclose to JAX (rtol = atol = 1e-5): {close}")


@click.command("train-mlp")
@_dir_opt("--images", "Folder of photos named by labels.csv's photo_id.")
@_dir_opt("--labels", "class,photo_id,label CSV (exactly one TRUE class per photo).")
@_dir_opt("--folders", "Folder-per-class layout instead of --images/--labels.")
@click.option("--features", type=FEATURES, default="cnn+hog", show_default=True)
@click.option("--hidden", type=int, default=256, show_default=True, help="Hidden units.")
@click.option("--epochs", type=int, default=30, show_default=True, help="At most.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam peak rate.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option("--patience", type=int, default=5, show_default=True, help="Early stopping.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_dir_opt("--test-images", "Held-out photos: test metrics go into the manifest.")
@_dir_opt("--test-labels", "Labels CSV for --test-images.")
@_dir_opt("--test-folders", "Held-out folder-per-class layout.")
@click.option("--allow-missing", is_flag=True, help="Skip labeled photos with no file.")
@click.option("--name", help="Bundle name (id = NAME-<UTC time>).")
@click.option("--activate", is_flag=True, help="Make the new bundle the active one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train_mlp(
    images: Path | None,
    labels: Path | None,
    folders: Path | None,
    features: str,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    patience: int,
    val_fraction: float,
    seed: int,
    test_images: Path | None,
    test_labels: Path | None,
    test_folders: Path | None,
    allow_missing: bool,
    name: str | None,
    activate: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a one-hidden-layer MLP (softmax) on cached feature vectors into a bundle.

    The counterpart of `autotag train`'s linear heads on the same features (same cache);
    its hidden layer becomes feature set net:<bundle id> on top of --features.

    \b
    autotag train-mlp --images DIR --labels labels.csv --features cnn+hog \\
        --test-images TDIR --test-labels test.csv
    """
    from autotag.config import settings
    from autotag.learning.mlp_workflow import MLPRequest, train_mlp_bundle

    images_dir, label_set = _labels(images, labels, folders, "train-mlp")
    test = None
    if test_images or test_labels or test_folders:
        test = _labels(test_images, test_labels, test_folders, "test set")
    recipe = {
        "hidden": hidden, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
        "dropout": dropout, "patience": patience, "val_fraction": val_fraction, "seed": seed,
    }  # fmt: skip
    request = MLPRequest(
        labels=label_set,
        images_dir=images_dir,
        features=features,
        recipe=recipe,
        name=name,
        activate=activate,
        allow_missing=allow_missing,
        test=test,
    )
    s = settings()
    work = s.run_dir / "train-mlp"
    work.mkdir(parents=True, exist_ok=True)
    bundle, report = train_mlp_bundle(
        request,
        s.models_dir,
        _cache_root(s),
        limits=decode_limits(s.limits),
        feature_options=feature_options(s.tagging),
        work_dir=work,
        progress=progress_bars(not quiet and not as_json),
    )
    m = bundle.metrics
    if _echo_bundle(bundle, activate, as_json):
        return
    click.echo(
        f"  mlp-head on {features}: validation top-1 {m['validation_top1']:.4f} "
        f"(best epoch {m['best_epoch']} of {m['epochs_run']})"
    )
    if report:
        click.echo("  test set:")
        _print_summary(report["summary"])
    d = m["onnx_vs_head_max_abs_diff"]
    click.echo(f"  ONNX vs NumPy max |diff|: probabilities {d['probabilities']:.2g}")


def _echo_bundle(bundle: ModelBundle, activate: bool, as_json: bool) -> bool:
    """The new bundle with its metrics as JSON (True: nothing more to print), or its id and
    path as the first lines of the text report."""
    if as_json:
        out = {"id": bundle.id, "path": str(bundle.path), "active": activate, **bundle.metrics}
        click.echo(json.dumps(out, indent=2))
        return True
    click.echo(f"bundle {bundle.id}{'  (active)' if activate else ''}")
    click.echo(f"  {bundle.path}")
    return False


commands = [train_cnn, train_mlp]
