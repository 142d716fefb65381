"""A bundle trained here and activated is picked up by the running topology (no resubmit),
and its tags reach Postgres; `autotag retag` re-tags the backlog with it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from autotag.config import Settings
from autotag.learning import samples
from autotag.pipeline import intake
from tests.cli import autotag, new_intake, wait_model

pytestmark = pytest.mark.cluster

CLASSES = ("birds", "fish", "insects")  # Tux Paint's animals/<class>/ photo cut-outs


def test_trained_bundle_is_used_by_the_running_topology(
    autotagger: Settings, restore_default: str, tmp_path: Path
) -> None:
    s = autotagger
    root = samples.TUXPAINT_STAMPS / "animals"
    folders = tmp_path / "train"
    held_out: dict[str, Path] = {}
    for cls in CLASSES:
        files = sorted((root / cls).glob("*.png"))
        files = [f for f in files if not f.name.endswith(("_mirror.png", "_flip.png"))]
        assert len(files) >= 6, cls
        (folders / cls).mkdir(parents=True)
        for f in files[:-1]:
            shutil.copy(f, folders / cls / f.name)
        held_out[cls] = files[-1]

    # An older photo, tagged by the default model before the new bundle exists.
    (old,) = intake.upload([str(samples.package_photos()[0])], new_intake(s), force=True)
    wait_model(s, old.photo_id, restore_default)
    trained = autotag(
        s,
        "train",
        "--folders",
        str(folders),
        "--features",
        "cnn",
        "--merge-default",
        "--name",
        "tux",
        "--activate",
        "--json",
        "-q",
        "--target-precision",
        "0.5",
    )
    assert trained.returncode == 0, trained.stderr
    bundle_id = json.loads(trained.stdout)["id"] if trained.stdout.strip().startswith("{") else None
    listed = json.loads(autotag(s, "models", "list", "--json").stdout)
    active = [b for b in listed if b.get("active")]
    assert active and active[0]["id"].startswith("tux-"), listed
    bundle_id = bundle_id or active[0]["id"]

    time.sleep(6)  # the bolts look at models/ACTIVE every 5 s
    from autotag.pipeline.tag_step import load_tagger

    direct = load_tagger(s.tagging, s.limits, bundle_id)
    own_class_found = 0
    for cls, photo in held_out.items():
        (rec,) = intake.upload([str(photo)], new_intake(s), force=True)
        info = wait_model(s, rec.photo_id, bundle_id)
        stored = dict(info.tags)
        direct_tags = direct.tag_file(photo).tags
        expected = {t.tag: t.score for t in direct_tags}
        assert stored.keys() == expected.keys(), (cls, stored, expected)
        assert info.kinds == {t.tag: (t.kind, t.via) for t in direct_tags}, cls
        own_class_found += cls in stored
    assert own_class_found >= 1, "no held-out photo got its trained class tag"

    # The backlog: photos tagged by the old model are re-tagged with the new one.
    result = autotag(s, "retag")
    assert result.returncode == 0, result.stderr
    wait_model(s, old.photo_id, bundle_id)
