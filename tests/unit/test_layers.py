"""Settings are read at the edges only: below cli/, web/ and the Storm components, no module
imports or calls the process-wide ``autotag.config.settings()``; values are passed down.
(import-linter, run by `make test`, checks the direction of imports; this checks the one
function that would let a library module reach for global configuration.)"""

from __future__ import annotations

import ast
from pathlib import Path

import autotag

PACKAGE = Path(autotag.__file__).parent
LIBRARY_LAYERS = ("vision", "storage", "pipeline", "search", "learning", "ops")


def _reads_global_settings(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "autotag.config":
            if any(alias.name == "settings" for alias in node.names):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "settings"
            and isinstance(node.value, ast.Name)
            and node.value.id == "config"
        ):
            lines.append(node.lineno)
    return lines


def test_library_layers_never_read_global_settings() -> None:
    offenders = []
    for layer in LIBRARY_LAYERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            if path.name == "storm_ui.py":
                continue  # a process entry point (`python -m autotag.ops.storm_ui`): an edge
            found = _reads_global_settings(ast.parse(path.read_text(), str(path)))
            offenders += [f"{path.relative_to(PACKAGE)}:{n}" for n in found]
    assert offenders == []


def test_the_check_sees_a_global_read() -> None:
    assert _reads_global_settings(ast.parse("from autotag.config import settings\n")) == [1]
    assert _reads_global_settings(ast.parse("from autotag import config\nconfig.settings()\n"))
