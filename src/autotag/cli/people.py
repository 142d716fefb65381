"""``autotag people``: the people in the photos — list, show, name, merge, correct, forget.

A person is a group of faces (``storage.people``): the stream puts a new face with the
nearest known person (``pipeline.people_match``), ``autotag people cluster`` groups the
faces nobody has yet. Naming a person makes their name a tag of kind ``person``, found by
``autotag search NAME``; renaming, merging and forgetting update search at once.
"""

from __future__ import annotations

import json
from typing import Any

import click

from autotag.config import settings
from autotag.errors import AutotagError
from autotag.pipeline.people_match import cluster_unassigned, gather
from autotag.storage import database
from autotag.storage import people as store


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _conn() -> Any:
    return database.connect(settings().services)


def _name(raw: str) -> str:
    try:
        return store.clean_name(raw)
    except ValueError as exc:
        raise AutotagError(str(exc)) from None


@click.group(invoke_without_command=True)
@click.option("--named", is_flag=True, help="Only people with a name.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def people(ctx: click.Context, named: bool, as_json: bool) -> None:
    """The people found in the photos: id, name, faces, photos, a sample face."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        found = store.list_people(conn, named_only=named)
    if as_json:
        _dump(found)
        return
    if not found:
        click.echo("no people yet (faces are grouped by `autotag people cluster`)")
        return
    for p in found:
        click.echo(
            f"{p['person_id']:>6}  {p['name'] or '(no name)':<30} {p['faces']:>5} faces "
            f"{p['photos']:>5} photos {p['video_segments']:>4} video segments  "
            f"sample face {p['sample_face']}"
        )


@people.command("show")
@click.argument("person_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show_cmd(person_id: int, as_json: bool) -> None:
    """One person: their photos, video segments and faces."""
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        p = store.person(conn, person_id)
    if p is None:
        raise AutotagError(f"no person {person_id} (see `autotag people`)")
    if as_json:
        _dump(p)
        return
    click.echo(f"person {p['person_id']}  {p['name'] or '(no name)'}")
    click.echo(
        f"{p['faces']} faces in {p['photos']} photos and {p['video_segments']} video segments"
    )
    for f in p["face_list"]:
        x, y, w, h = f["box"]
        where = (
            f"video {f['video_id']} #{f['segment']} at {f['at_secs']:.1f} s"
            if f["video_id"]
            else f"photo {f['photo_id']}"
        )
        click.echo(
            f"  face {f['face_id']:>6}  {where}  box {x},{y} {w}x{h}  ({f['assigned_by'] or '-'})"
        )


@people.command("name")
@click.argument("args", nargs=-1, required=True)
@click.option("--face", "face_id", type=int, help="Name the person this face belongs to.")
@click.option("--json", "as_json", is_flag=True)
def name_cmd(args: tuple[str, ...], face_id: int | None, as_json: bool) -> None:
    """Name a person: `people name ID NAME`, or `people name --face FACE_ID NAME` (the face's
    person, the person already called NAME, or a new person started from the face). The
    stored faces nobody has that are as close as tagging.face_match_distance to one of
    theirs join them."""
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        if face_id is not None:
            name = _name(" ".join(args))
            done = store.name_face(conn, face_id, name)
            if done is None:
                raise AutotagError(f"no face {face_id} (see `autotag show PHOTO`)")
        else:
            if len(args) < 2 or not args[0].isdigit():
                raise AutotagError("usage: autotag people name ID NAME (or --face FACE_ID NAME)")
            name = _name(" ".join(args[1:]))
            pid = store.name_person(conn, int(args[0]), name)
            if pid is None:
                raise AutotagError(f"no person {args[0]} (see `autotag people`)")
            done = {"person_id": pid, "name": name}
        # Their other stored faces join them now (the stream does it for new photos).
        done["faces_joined"] = gather(conn, done["person_id"], s.tagging.face_match_distance)
    if as_json:
        _dump(done)
    else:
        click.echo(
            f"person {done['person_id']} is {done['name']} "
            f"({done['faces_joined']} more of their faces found)"
        )


@people.command("merge")
@click.argument("person_id", type=int)
@click.argument("other_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def merge_cmd(person_id: int, other_id: int, as_json: bool) -> None:
    """Merge person OTHER into person ID (OTHER's faces become ID's)."""
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        kept = store.merge(conn, person_id, other_id)
    if kept is None:
        raise AutotagError(f"no person {person_id} or {other_id} (see `autotag people`)")
    if as_json:
        _dump({"person_id": kept, "merged": other_id})
    else:
        click.echo(f"person {other_id} merged into {kept}")


@people.command("remove-face")
@click.argument("face_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def remove_face_cmd(face_id: int, as_json: bool) -> None:
    """This face is not its person: it leaves them and is never given to them again."""
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        done = store.remove_face(conn, face_id)
    if done is None:
        raise AutotagError(f"no face {face_id}")
    if as_json:
        _dump(done)
    elif done["removed_from"] is None:
        click.echo(f"face {face_id} belonged to nobody")
    else:
        click.echo(f"face {face_id} removed from person {done['removed_from']}")


@people.command("forget")
@click.argument("person_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def forget_cmd(person_id: int, as_json: bool) -> None:
    """Forget a person (privacy): their name, person tags and face descriptors are deleted."""
    s = settings()
    with _conn() as conn, database.pg_errors(s.services):
        done = store.forget(conn, person_id)
    if done is None:
        raise AutotagError(f"no person {person_id}")
    if as_json:
        _dump(done)
    else:
        click.echo(
            f"person {done['person_id']} forgotten: {done['faces_forgotten']} face descriptors "
            f"deleted, {done['photos']} photos and {done['video_segments']} video segments "
            "untagged"
        )


@people.command("cluster")
@click.option(
    "--max-distance",
    type=float,
    default=None,
    help="DBSCAN eps: faces closer than this (descriptor distance) are neighbours "
    "[default: tagging.face_cluster_distance, 0.5].",
)
@click.option(
    "--min-faces",
    type=int,
    default=None,
    help="DBSCAN min_samples: the faces a new person needs "
    "[default: tagging.face_cluster_min_faces, 3].",
)
@click.option("--json", "as_json", is_flag=True)
def cluster_cmd(max_distance: float | None, min_faces: int | None, as_json: bool) -> None:
    """Group the faces nobody has: each joins the nearest known person within the match
    distance (tagging.face_match_distance), the rest are clustered into new unnamed people.
    The DB writer also does this by itself after tagging.face_cluster_after new faces."""
    s = settings()
    if max_distance is None:
        max_distance = s.tagging.face_cluster_distance
    if min_faces is None:
        min_faces = s.tagging.face_cluster_min_faces
    if max_distance <= 0 or min_faces < 1:
        raise AutotagError("--max-distance must be > 0 and --min-faces >= 1")
    with _conn() as conn, database.pg_errors(s.services):
        done = cluster_unassigned(
            conn,
            match_distance=s.tagging.face_match_distance,
            cluster_distance=max_distance,
            min_faces=min_faces,
        )
    if as_json:
        _dump({**done, "max_distance": max_distance, "min_faces": min_faces})
    else:
        click.echo(
            f"{done['faces_seen']} unassigned faces: {done['joined_known']} joined known people, "
            f"{done['faces_in_new_people']} in {done['new_people']} new people, "
            f"{done['left_unassigned']} left unassigned"
        )


commands = [people]
