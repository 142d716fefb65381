"""``autotag train``, ``autotag evaluate``, ``autotag datasets``: make and measure bundles.

Labels are the seed's ``class,photo_id,label`` CSV (TRUE/FALSE); photo_id is a path relative
to --images (with or without extension) or a unique file-name stem. ``--folders DIR`` instead
takes one sub-folder per class (each photo TRUE for its folder, FALSE for the others).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.learning.progress import Progress, Step
from autotag.pipeline.tag_step import decode_limits, feature_options

FEATURES = click.Choice(["cnn", "hog", "cnn+hog"])


class ProgressBars:
    """Learning progress as tqdm bars (one per stage, on stderr); notes as lines on stdout."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}

    def __call__(self, event: Step | str) -> None:
        if isinstance(event, str):
            click.echo(event)
            return
        bar = self._bars.get(event.stage)
        if bar is None:
            bar = self._tqdm(total=event.total, desc=event.stage, unit=event.unit)
            self._bars[event.stage] = bar
        bar.update(event.done - bar.n)
        if event.done >= event.total:
            bar.close()
            del self._bars[event.stage]


def progress_bars(show: bool) -> Progress | None:
    return ProgressBars() if show else None


def _cache_root(s: Settings) -> Path:
    """Where computed features are kept (``run/featcache``)."""
    return s.run_dir / "featcache"


def _labels(images: Path | None, labels: Path | None, folders: Path | None, what: str):
    """(images dir, LabelSet) from --images/--labels or --folders."""
    from autotag.learning.datasets import folder_labels, read_labels

    if folders is not None:
        if images is not None or labels is not None:
            raise click.UsageError(f"{what}: give --folders, or --images with --labels, not both")
        return folders, folder_labels(folders)
    if images is None or labels is None:
        raise click.UsageError(f"{what}: needs --images DIR --labels CSV (or --folders DIR)")
    return images, read_labels(labels)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.2f}%"


def _print_summary(s: dict[str, Any]) -> None:
    if s.get("top1_accuracy") is not None:
        click.echo(
            f"  top-1 accuracy {_pct(s['top1_accuracy'])} (arg-max over {s['top1_photos']} photos), "
            f"macro-F1 (arg-max) {s['top1_macro_f1']:.4f}"
        )
    click.echo(
        f"  mAP {s['map']:.4f}   at thresholds: macro precision {s['macro_precision']:.4f}, "
        f"recall {s['macro_recall']:.4f}, F1 {s['macro_f1']:.4f}"
    )


def _dir_opt(name: str, help: str):  # noqa: A002 - click's keyword
    return click.option(name, type=click.Path(path_type=Path, exists=True), help=help)


@click.command()
@_dir_opt("--images", "Folder of photos named by labels.csv's photo_id.")
@_dir_opt("--labels", "class,photo_id,label CSV (TRUE/FALSE).")
@_dir_opt("--folders", "Folder-per-class layout instead of --images/--labels.")
@click.option("--features", type=FEATURES, default=None, help="Feature set [default: cnn].")
@click.option(
    "--target-precision",
    type=float,
    default=None,
    help="Per-class threshold reaches this precision on validation [0.9].",
)
@click.option(
    "--C",
    "C",
    type=float,
    default=None,
    help="Inverse L2 strength, sklearn C on standardized features [0.01].",
)
@click.option("--val-fraction", type=float, default=None, help="Held out per class [0.2].")
@click.option("--seed", type=int, default=None, help="Split seed [0].")
@click.option("--merge-default", is_flag=True, help="Add the pretrained ImageNet heads (cnn).")
@click.option("--name", help="Bundle name (id = NAME-<UTC time>).")
@click.option("--activate", is_flag=True, help="Make the new bundle the active one.")
@click.option(
    "--jobs",
    type=int,
    default=-1,
    show_default=True,
    help="Classes trained in parallel (-1 = all cores).",
)
@click.option(
    "--update",
    "update",
    metavar="BUNDLE",
    help="Retrain only classes whose labels changed since BUNDLE; copy the rest.",
)
@_dir_opt("--test-images", "Held-out photos: test metrics go into the manifest.")
@_dir_opt("--test-labels", "Labels CSV for --test-images.")
@_dir_opt("--test-folders", "Held-out folder-per-class layout.")
@click.option("--allow-missing", is_flag=True, help="Skip labeled photos with no file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(
    images: Path | None,
    labels: Path | None,
    folders: Path | None,
    features: str | None,
    target_precision: float | None,
    C: float | None,  # noqa: N803
    val_fraction: float | None,
    seed: int | None,
    merge_default: bool,
    name: str | None,
    activate: bool,
    jobs: int,
    update: str | None,
    test_images: Path | None,
    test_labels: Path | None,
    test_folders: Path | None,
    allow_missing: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train one linear classifier per class into a new versioned bundle.

    \b
    autotag train --images DIR --labels labels.csv --features cnn --activate
    autotag train --folders DIR --features hog --name shoes
    autotag train --images DIR --labels new.csv --update BUNDLE_ID
    """
    from autotag.config import settings
    from autotag.learning.workflow import TrainRequest, train_bundle

    images_dir, label_set = _labels(images, labels, folders, "train")
    test = None
    if test_images or test_labels or test_folders:
        test = _labels(test_images, test_labels, test_folders, "test set")
    overrides = {
        k: v
        for k, v in {
            "target_precision": target_precision,
            "C": C,
            "val_fraction": val_fraction,
            "seed": seed,
        }.items()
        if v is not None
    }
    request = TrainRequest(
        labels=label_set,
        images_dir=images_dir,
        features=features,
        recipe=overrides,
        name=name,
        merge_default=merge_default,
        update=update,
        activate=activate,
        jobs=jobs,
        allow_missing=allow_missing,
        test=test,
    )
    s = settings()
    res = train_bundle(
        request,
        s.models_dir,
        _cache_root(s),
        limits=decode_limits(s.limits),
        feature_options=feature_options(s.tagging),
        progress=progress_bars(not quiet and not as_json),
    )
    b = res.bundle
    m = b.metrics
    if as_json:
        out = {
            "id": b.id,
            "path": str(res.path),
            "classes": b.k,
            "retrained": res.retrained,
            "reused": res.reused,
            "kept": res.kept,
            "features": res.features,
            "validation": m.get("validation"),
            "test": m.get("test"),
            "seconds": round(res.seconds, 1),
            "active": activate,
        }
        click.echo(json.dumps(out, indent=2))
        return
    f = res.features
    click.echo(f"bundle {b.id}{'  (active)' if activate else ''}")
    click.echo(f"  {res.path}")
    click.echo(
        f"  features {b.feature_key}: {f['photos']} photos, {f['computed']} computed, "
        f"{f['reused']} from cache, {f['failed']} undecodable"
    )
    v = m["validation"]
    click.echo(
        f"  classes: {len(res.classes)} ({len(res.retrained)} trained, {len(res.reused)} reused, "
        f"{len(res.kept)} kept); {b.k} tags in bundle"
    )
    vm = "-" if v["val_map"] is None else f"{v['val_map']:.4f}"
    click.echo(
        f"  validation mAP {vm}; target precision reached by "
        f"{v['target_precision_reached']}/{v['trained']} trained classes"
        + (f"; {v['not_converged']} not converged" if v["not_converged"] else "")
    )
    if res.test is not None:
        click.echo("  test set:")
        _print_summary(res.test["summary"])
    click.echo(f"  {res.seconds:.1f}s")


@click.command()
@click.argument("bundle", required=False)
@_dir_opt("--images", "Folder of labeled photos (never used for training).")
@_dir_opt("--labels", "class,photo_id,label CSV.")
@_dir_opt("--folders", "Folder-per-class layout instead of --images/--labels.")
@click.option("--out", type=click.Path(path_type=Path), help="Report folder [run/eval/<id>].")
@click.option(
    "--cv",
    "folds",
    type=int,
    default=None,
    help="K-fold cross-validation of the training recipe instead of a bundle.",
)
@click.option("--features", type=FEATURES, default="cnn", show_default=True, help="With --cv.")
@click.option("--target-precision", type=float, default=0.9, show_default=True, help="With --cv.")
@click.option("--C", "C", type=float, default=0.01, show_default=True, help="With --cv.")
@click.option("--jobs", type=int, default=-1, show_default=True, help="With --cv.")
@click.option("--seed", type=int, default=0, show_default=True, help="Fold seed (with --cv).")
@click.option("--allow-missing", is_flag=True, help="Skip labeled photos with no file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def evaluate(
    bundle: str | None,
    images: Path | None,
    labels: Path | None,
    folders: Path | None,
    out: Path | None,
    folds: int | None,
    features: str,
    target_precision: float,
    C: float,  # noqa: N803
    jobs: int,
    seed: int,
    allow_missing: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure BUNDLE (id, path or `active`) on labeled photos, or cross-validate with --cv K.

    Writes report.json, pr_curves.png and (exclusive classes) confusion.png.
    """
    import time

    from autotag.config import settings
    from autotag.learning.datasets import dataset_name
    from autotag.learning.evaluation import cross_validate, evaluate_bundle, write_report
    from autotag.learning.head import LinearHead
    from autotag.learning.labeled_features import load_labeled_features
    from autotag.vision.bundle import load_bundle_ref, safe_bundle_name

    s = settings()
    images_dir, label_set = _labels(images, labels, folders, "evaluate")
    progress = progress_bars(not quiet and not as_json)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if folds is not None:
        if bundle is not None:
            raise click.UsageError("--cv retrains the recipe: give no BUNDLE")
        if folds < 2:
            raise click.UsageError("--cv needs at least 2 folds")
        from autotag.vision.feature_sets import get_feature_set

        fs = get_feature_set(features, feature_options(s.tagging))
        data = load_labeled_features(
            label_set,
            images_dir,
            fs,
            _cache_root(s),
            limits=decode_limits(s.limits),
            allow_missing=allow_missing,
            progress=progress,
        )
        head = LinearHead(C=C, target_precision=target_precision, n_jobs=jobs)
        report = cross_validate(
            data.X, data.labels, head, folds=folds, seed=seed, progress=progress
        )
        report["data"] = {"images": str(images_dir), "labels": data.labels.source, **data.info}
        report["features"] = fs.key
        ds = safe_bundle_name(dataset_name(label_set)).replace("/", "-")
        out = out or s.run_dir / "eval" / f"cv{folds}-{ds}-{features}-{stamp}"
    else:
        b = load_bundle_ref(s.models_dir, bundle or "active")
        report = evaluate_bundle(
            b,
            images_dir,
            label_set,
            _cache_root(s),
            limits=decode_limits(s.limits),
            feature_options=feature_options(s.tagging),
            allow_missing=allow_missing,
            progress=progress,
        )
        out = out or s.run_dir / "eval" / f"{b.id}-{stamp}"
    files = write_report(report, out)
    summ = report["summary"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "summary": summ,
                    "cv": report.get("cv"),
                    "files": {k: str(v) for k, v in files.items()},
                },
                indent=2,
            )
        )
        return
    if folds is not None:
        cv = report["cv"]
        click.echo(f"{folds}-fold cross-validation, {report['features']}, {summ['photos']} photos:")
        for key, label in (
            ("top1_accuracy", "top-1 accuracy"),
            ("map", "mAP"),
            ("macro_f1", "macro-F1 (thresholds)"),
        ):
            if key in cv:
                click.echo(f"  {label}: {cv[key]['mean']:.4f} ± {cv[key]['std']:.4f} (mean ± sd)")
        click.echo("pooled out-of-fold:")
    else:
        click.echo(f"bundle {report['bundle']['id']} on {summ['photos']} photos:")
    _print_summary(summ)
    worst = sorted(
        ((c, v) for c, v in report["per_class"].items() if v.get("ap") is not None),
        key=lambda kv: kv[1]["ap"],
    )[:5]
    if worst:
        click.echo("  lowest AP: " + ", ".join(f"{c} {v['ap']:.3f}" for c, v in worst))
    for k, p in files.items():
        click.echo(f"  {k}: {p}")


@click.group()
def datasets() -> None:
    """Real labeled datasets for training and evaluation."""


@datasets.command("prepare")
@click.argument("name", type=click.Choice(["fashion-mnist", "tuxpaint"]))
@click.option("--out", type=click.Path(path_type=Path), help="[run/datasets/NAME]")
@click.option("--limit", type=int, help="Only the first N images (per split).")
@click.option("--force", is_flag=True, help="Rewrite even if already prepared.")
@click.option("-q", "--quiet", is_flag=True)
def prepare(name: str, out: Path | None, limit: int | None, force: bool, quiet: bool) -> None:
    """Write PNG images + labels.csv (seed format) for NAME.

    \b
    fashion-mnist: OUT/train (60,000) and OUT/test (10,000), 10 exclusive classes
    tuxpaint:      OUT/images/<category path>/*.png, hierarchical classes (>= 10 images)
    """
    from autotag.config import settings
    from autotag.learning.datasets import DATASETS

    out = out or settings().run_dir / "datasets" / name
    meta = DATASETS[name](out, limit=limit, force=force, progress=progress_bars(not quiet))
    if name == "fashion-mnist":
        for split, m in meta.items():
            d = out / split
            click.echo(f"{split}: {m['n_images']} images, {len(m['classes'])} classes")
            click.echo(f"  autotag train --images {d / 'images'} --labels {d / 'labels.csv'}")
    else:
        click.echo(
            f"{meta['n_images']} images, {len(meta['classes'])} classes "
            f"({meta['unlabeled_images']} images in no class: negatives only)"
        )
        click.echo(f"  autotag train --images {out / 'images'} --labels {out / 'labels.csv'}")
    if not out.is_dir():
        raise AutotagError(f"nothing written to {out}")


commands = [train, evaluate, datasets]
