"""The ``storm`` command on the virtualenv's PATH: Storm's own CLI, for this cluster.

Not a click command: arguments go through to Storm's classes untouched, as with ``bin/storm``.
"""

from __future__ import annotations

import sys

from autotag.config import settings
from autotag.errors import AutotagError
from autotag.ops import kill_guard, storm_cli


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(storm_cli.usage())
        print("\ncluster: the one of this run directory (AUTOTAG_RUN_DIR, AUTOTAG_PORT_OFFSET)")
        raise SystemExit(0 if args else 2)
    try:
        _, command, cmd_args = storm_cli.split_options(args)
        if command == "kill" and cmd_args and not cmd_args[0].startswith("-"):
            # Storm's own KillTopology would halt a Supervisor still localizing the topology.
            kill_guard.wait_settled(
                settings(),
                cmd_args[0],
                progress=lambda m: print(m, file=sys.stderr),
                force_hint=f"`autotag kill {cmd_args[0]} {kill_guard.FORCE_FLAG}`",
            )
        code = storm_cli.run(settings(), args)
    except AutotagError as exc:
        print(f"storm: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
