"""``autotag train-cnn``: train a network on Fashion-MNIST into a bundle (needs train.txt)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from autotag.learning.networks import ARCHITECTURES


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
        resume=resume,
        name=name,
        activate=activate,
        progress=not quiet and not as_json,
    )
    bundle, result = train_network(request, s.models_dir)
    m = bundle.metrics
    if as_json:
        out = {"id": bundle.id, "path": str(bundle.path), "active": activate, **m}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"bundle {bundle.id}{'  (active)' if activate else ''}")
    click.echo(f"  {bundle.path}")
    click.echo(
        f"  {arch}: test top-1 {m['test_top1']:.4f} on {m['test_images']} images; validation "
        f"{m['validation_top1']:.4f} (best epoch {m['best_epoch']} of {m['epochs_run']})"
    )
    click.echo(f"  {m['seconds_per_epoch']:.1f} s per epoch with {procs} process(es)")
    d = m["onnx_max_abs_diff"]
    click.echo(
        f"  ONNX vs JAX max |diff|: logits {d['logits']:.2g}, embedding {d['embedding']:.2g}"
    )


commands = [train_cnn]
