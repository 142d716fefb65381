"""The ``autotag`` command: a thin front over the package (parse, call, print).

Each command group lives in its own module and is registered here; any AutotagError
becomes a one-line reason on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from autotag.errors import AutotagError

# Modules under autotag.cli that each expose ``commands``: a list of click commands/groups.
COMMAND_MODULES = [
    "cluster",
    "topology",
    "intake",
    "tagging",
    "lookup",
    "models",
    "training",
    "concepts",
    "networks",
    "similar",
    "video",
    "requeue",
    "gc",
    "demo",
    "web",
    "labels",
    "learn",
    "deletion",
    "people",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autotag")
def cli() -> None:
    """autotag: continuous photo auto-tagging on a local Apache Storm cluster."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"autotag.cli.{name}")
        for command in module.commands:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="autotag", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("autotag: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AutotagError as exc:
        click.echo(f"autotag: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("autotag: interrupted", err=True)
        sys.exit(130)
    except (OSError, ValueError, RuntimeError) as exc:
        click.echo(f"autotag: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
