"""``autotag evaluate-concepts``: how right a bundle's concept tags are, on real photos.

Tux Paint's photo stamps are the held-out evaluation; ``--dev`` runs the development photos
instead and prints the table the global concept threshold was chosen from.
"""

from __future__ import annotations

import json
import sys

import click

from autotag.config import settings
from autotag.learning import concept_evaluation as ce
from autotag.pipeline.tag_step import load_tagger


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


@click.command("evaluate-concepts")
@click.option("--bundle", "bundle_id", default=None, help="Bundle id (default: the active one).")
@click.option("--dev", is_flag=True, help="The development photos and the threshold table.")
@click.option("--json", "as_json", is_flag=True)
def evaluate_concepts(bundle_id: str | None, dev: bool, as_json: bool) -> None:
    """Per-concept precision and recall on Tux Paint's photo stamps (held out), the share
    of stamps whose category word is among their tags, and the share of wrong concept tags."""
    s = settings()
    tagger = load_tagger(s.tagging, s.limits, bundle_id)
    photos = ce.dev_photos() if dev else ce.tuxpaint_photo_stamps()
    with click.progressbar(length=len(photos), label="tagging", file=sys.stderr) as bar:
        scores = ce.concept_scores(tagger, photos, progress=bar.update)
    result = ce.report(photos, scores.tags())
    alone = ce.report(photos, scores.tags(detectors=False))  # concept tags only: no detector
    result["concept_kind_only"] = {
        k: alone[k] for k in ("concept_tags", "wrong_tags", "wrong_share", "category_word_share")
    }
    result["bundle"] = tagger.bundle.id
    result["photos_from"] = "development photos" if dev else "Tux Paint photo stamps"
    if dev:
        chosen, table = ce.choose_threshold(photos, scores)
        result["threshold_table"] = table
        result["chosen_threshold"] = chosen
        result["target_precision"] = ce.TARGET_PRECISION
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['photos_from']}: {result['photos']} photos, bundle {result['bundle']}")
    click.echo(
        f"concept tags {result['concept_tags']}, wrong {result['wrong_tags']}"
        f" ({_pct(result['wrong_share'])}); category word among the tags:"
        f" {_pct(result['category_word_share'])}; no concept tag: {_pct(result['no_concept_share'])}"
    )
    a = result["concept_kind_only"]
    click.echo(
        f"without the detector's person tags: concept tags {a['concept_tags']}, wrong"
        f" {a['wrong_tags']} ({_pct(a['wrong_share'])}); category word among the tags:"
        f" {_pct(a['category_word_share'])}"
    )
    click.echo(
        f"  {'concept':20} {'right':>5} {'wrong':>5} {'missed':>6} {'precision':>9} {'recall':>7}"
    )
    for word, c in result["per_concept"].items():
        click.echo(
            f"  {word:20} {c['tp']:5d} {c['fp']:5d} {c['fn']:6d}"
            f" {_pct(c['precision']):>9} {_pct(c['recall']):>7}"
        )
    if dev:
        click.echo(
            f"threshold (lowest with precision >= {ce.TARGET_PRECISION}): {result['chosen_threshold']}"
        )
        for row in result["threshold_table"]:
            click.echo(
                f"  {row['threshold']:.2f}  precision {_pct(row['precision'])}"
                f"  recall {_pct(row['recall'])}  tags {row['concept_tags']}"
            )


commands = [evaluate_concepts]
