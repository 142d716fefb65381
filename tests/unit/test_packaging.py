"""pyproject.toml declares what the lock files install: every package pinned in
virtualenvs/autotag.txt is a dependency or in the web or dev extra, virtualenvs/train.txt is the
train extra, and each locked version satisfies what pyproject.toml asks for."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _lock(name: str) -> dict[str, str]:
    """name -> pinned version of a virtualenvs/*.txt file."""
    out = {}
    for line in (ROOT / "virtualenvs" / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line} is not pinned"
            out[canonicalize_name(req.name)] = spec.version
    return out


def _declared(reqs: list[str]) -> dict[str, Requirement]:
    out = {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}
    out.pop("autotag", None)  # dev's autotag[train,web]
    return out


def test_the_lock_is_what_pyproject_declares() -> None:
    extras = PROJECT["optional-dependencies"]
    declared = {
        **_declared(PROJECT["dependencies"]),
        **_declared(extras["web"]),
        **_declared(extras["dev"]),
    }
    locked = _lock("autotag.txt")
    assert sorted(declared) == sorted(locked)
    assert sorted(_declared(extras["train"])) == sorted(_lock("train.txt"))
    assert "autotag[train,web]" in extras["dev"]


def test_every_locked_version_satisfies_pyproject() -> None:
    locked = {**_lock("autotag.txt"), **_lock("train.txt")}
    every = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()]
    for reqs in every:
        for name, req in _declared(reqs).items():
            assert req.specifier.contains(locked[name], prereleases=True), (name, locked[name])


def test_python_version() -> None:
    assert PROJECT["requires-python"] == ">=3.11"  # datetime.UTC
