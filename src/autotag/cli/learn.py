"""``autotag learn``, ``autotag learned``, and ``autotag labels add/remove/list``: tags taught
by labels (learning.teach)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from autotag.cli.labels import labels
from autotag.config import Settings, settings
from autotag.errors import AutotagError
from autotag.storage import blobs, database, lookups
from autotag.storage import labels as label_store
from autotag.storage import learned as learned_store

if TYPE_CHECKING:  # scikit-learn comes with them: every autotag command would load it (~1 s)
    from autotag.learning import teach


def _print_report(report: teach.Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    if report.busy:
        click.echo("another learner is running; it will pick these labels up")
        return
    for o in report.outcomes:
        est = (
            f"  (est. precision {o.precision:.2f}, recall {o.recall:.2f})"
            if o.precision is not None and o.recall is not None
            else ""
        )
        click.echo(f"{o.tag}: {o.status}: {o.message}{est}")
    if report.rescored:
        r = report.rescored
        click.echo(
            f"re-scored {r['photos']} stored photos in {r['seconds']:.2f}s:"
            f" {r['tags_written']} learned tags written"
        )


def _run_learn(
    s: Settings, tags: list[str] | None, force: bool, quiet: bool = False
) -> teach.Report:
    from autotag.learning import teach
    from autotag.web.learner import learn_options

    with database.connect(s.services) as conn, database.pg_errors(s.services):
        return teach.learn(
            conn,
            s.models_dir,
            learn_options(s),
            tags=tags,
            force=force,
            say=None if quiet else (lambda m: click.echo(m, err=True)),
        )


def _photo_ids(args: tuple[str, ...]) -> list[str]:
    out = []
    for a in args:
        pid = a.strip().lower()
        if not blobs.is_photo_id(pid):
            raise AutotagError(f"{a!r} is not a photo id (64 hex characters)")
        out.append(pid)
    return out


def _set(tag: str, photos: tuple[str, ...], positive: bool, learn: bool, as_json: bool) -> None:
    answers = {pid: positive for pid in _photo_ids(photos)}
    _label(tag, answers, learn, as_json, "added to" if positive else "removed from")


def _label(tag: str, answers: dict[str, bool], learn: bool, as_json: bool, word: str) -> None:
    """Record labels of one tag (photo id → has it), in one transaction; then learn it."""
    s = settings()
    try:
        tag = label_store.clean_tag(tag)
    except ValueError as exc:
        raise AutotagError(f"bad tag: {exc}") from None
    done: list[dict[str, Any]] = []
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        with conn.transaction():
            for pid, positive in answers.items():
                try:
                    done.append(label_store.set_label(conn, pid, tag, positive).as_dict())
                except LookupError as exc:
                    raise AutotagError(str(exc)) from None
    report = _run_learn(s, [tag], False, quiet=as_json) if learn else None
    if as_json:
        out: dict[str, Any] = {"labels": done}
        if report is not None:
            out["learn"] = report.as_dict()
        click.echo(json.dumps(out))
        return
    click.echo(f"{tag}: {word} {len(done)} photos")
    if report is not None:
        _print_report(report, False)


_NO_LEARN = click.option(
    "--no-learn", is_flag=True, help="Only record the labels; do not learn the tag now."
)


@labels.command("add")
@click.option("--tag", required=True, help="The tag these photos have.")
@click.argument("photos", nargs=-1, required=True)
@_NO_LEARN
@click.option("--json", "as_json", is_flag=True)
def add_cmd(tag: str, photos: tuple[str, ...], no_learn: bool, as_json: bool) -> None:
    """Label PHOTOS (ids) with TAG, as the web page's "add a tag" does; then learn the tag
    (a new tag is learned from its 5th positive label)."""
    _set(tag, photos, True, not no_learn, as_json)


@labels.command("remove")
@click.option("--tag", required=True, help="The tag these photos do not have.")
@click.argument("photos", nargs=-1, required=True)
@_NO_LEARN
@click.option("--json", "as_json", is_flag=True)
def remove_cmd(tag: str, photos: tuple[str, ...], no_learn: bool, as_json: bool) -> None:
    """Say PHOTOS (ids) do not have TAG, as the web page's "remove a tag" does (a negative
    label); then learn the tag again."""
    _set(tag, photos, False, not no_learn, as_json)


@labels.command("list")
@click.option("--tag", default=None, help="Only this tag's labels.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def list_cmd(tag: str | None, limit: int, as_json: bool) -> None:
    """Labels (tag corrections), newest first."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        rows = learned_store.list_labels(conn, tag, limit)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"photo_id": p, "tag": t, "positive": pos, "labeled_at": at.isoformat()}
                    for p, t, pos, at in rows
                ]
            )
        )
        return
    for p, t, pos, at in rows:
        click.echo(f"{at:%Y-%m-%d %H:%M:%S}  {'+' if pos else '-'} {t}  {p}")
    if not rows:
        click.echo("no labels", err=True)


@click.command()
@click.option("--tag", "tags", multiple=True, help="Only these tags (default: every tag).")
@click.option("--force", is_flag=True, help="Learn again even if the labels did not change.")
@click.option("--watch", is_flag=True, help="Keep looking for changed labels.")
@click.option("--every", default=5.0, show_default=True, type=click.FloatRange(0.5))
@click.option("--json", "as_json", is_flag=True)
def learn(tags: tuple[str, ...], force: bool, watch: bool, every: float, as_json: bool) -> None:
    """Learn tags from labels: every tag with enough positive labels whose labels changed.
    The web app does this by itself after a label change, and `autotag labels add` too."""
    s = settings()
    while True:
        report = _run_learn(s, list(tags) or None, force, quiet=as_json)
        if report.outcomes or report.busy or not watch:
            _print_report(report, as_json)
        if not watch:
            return
        force = False
        time.sleep(every)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def learned(ctx: click.Context, as_json: bool) -> None:
    """Tags learned from labels: examples, estimated precision/recall, when learned; and the
    tags not learnable yet."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        rows = learned_store.states(conn)
        counts = {t: learned_store.learned_tag_count(conn, t) for t in rows}
        waiting = {  # the questions still unanswered, as the web API lists them
            t: learned_store.unanswered(conn, t, r.questions) if r.status == "asking" else []
            for t, r in rows.items()
        }
    if as_json:
        click.echo(
            json.dumps(
                [
                    {**r.as_dict(), "photos": counts[t], "questions": waiting[t]}
                    for t, r in rows.items()
                ]
            )
        )
        return
    if not rows:
        click.echo("no labelled tags yet (autotag labels add --tag TAG PHOTO_ID...)", err=True)
    for t, r in rows.items():
        est = (
            f"precision {r.precision:.2f} recall {r.recall:.2f}"
            if r.precision is not None and r.recall is not None
            else "-"
        )
        click.echo(
            f"{t:24s} {r.status:8s} +{r.n_pos}/-{r.n_neg}  {est}  {counts[t]} photos"
            f"  {r.learned_at:%Y-%m-%d %H:%M}  {r.message}"
        )


@learned.command("forget")
@click.argument("tag")
@click.option("--json", "as_json", is_flag=True)
def forget_cmd(tag: str, as_json: bool) -> None:
    """Remove TAG everywhere: its head (a new bundle is activated), its stored tags on every
    photo, and its labels."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        from autotag.learning import teach

        out = teach.forget(conn, s.models_dir, tag)
    if as_json:
        click.echo(json.dumps(out))
        return
    if not out["was_learned"] and not out["labels_deleted"] and not out["tags_deleted"]:
        raise AutotagError(f"no learned tag or labels named {tag!r}")
    click.echo(
        f"{tag}: forgotten ({out['tags_deleted']} stored tags, {out['labels_deleted']} labels"
        + (f"; active bundle now {out['bundle_id']})" if out["bundle_id"] else ")")
    )


@learned.command("questions")
@click.argument("tag")
@click.option("--json", "as_json", is_flag=True)
def questions_cmd(tag: str, as_json: bool) -> None:
    """The photos a new learned tag asks about before it is published: answer each with
    `autotag learned answer TAG --yes ID --no ID` (or the Learned page's buttons)."""
    s = settings()
    with database.connect(s.services) as conn, database.pg_errors(s.services):
        state = learned_store.states(conn).get(tag)
        if state is None:
            raise AutotagError(f"no labelled tag {tag!r} (autotag learned lists them)")
        waiting = (
            learned_store.unanswered(conn, tag, state.questions) if state.status == "asking" else []
        )
        photos = lookups.summaries(conn, waiting, tags=3)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "tag": tag,
                    "status": state.status,
                    "phase": state.phase if state.status == "asking" else None,
                    "asked": len(state.questions) if state.status == "asking" else 0,
                    "photos": [
                        {"photo_id": p["photo_id"], "source": p["source"], "tags": p["tags"]}
                        for p in photos
                    ],
                    "message": state.message,
                }
            )
        )
        return
    if state.status != "asking":
        click.echo(f"{tag}: {state.status}: {state.message} (nothing to answer)")
        return
    if not photos:
        click.echo(f"{tag}: every question is answered; `autotag learn --tag {tag}` goes on")
        return
    click.echo(f"{tag}: {state.message}")
    for p in photos:
        words = ", ".join(t["tag"] for t in p["tags"]) or "-"
        click.echo(f"  {p['photo_id']}  {p['source'] or '-'}  ({words})")
    click.echo(f"answer: autotag learned answer {tag} --yes ID... --no ID...")


@learned.command("answer")
@click.argument("tag")
@click.option("--yes", "yes", multiple=True, help="A photo (id) that has TAG.")
@click.option("--no", "no", multiple=True, help="A photo (id) that does not have TAG.")
@_NO_LEARN
@click.option("--json", "as_json", is_flag=True)
def answer_cmd(
    tag: str, yes: tuple[str, ...], no: tuple[str, ...], no_learn: bool, as_json: bool
) -> None:
    """Answer TAG's questions (or label any photos): --yes ID has it, --no ID has not; the
    same labels as `autotag labels add/remove`, then the tag is learned again."""
    if not yes and not no:
        raise AutotagError("give at least one --yes ID or --no ID")
    answers = {pid: True for pid in _photo_ids(yes)}
    for pid in _photo_ids(no):
        if answers.get(pid):
            raise AutotagError(f"{pid} is both --yes and --no")
        answers[pid] = False
    _label(tag, answers, not no_learn, as_json, "answered for")


commands = [learn, learned]
