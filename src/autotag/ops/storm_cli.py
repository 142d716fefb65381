"""Storm's own command line (``storm list``, ``storm deactivate NAME``...) for this cluster.

Apache ships ``bin/storm`` only in its binary release, which this project does not download;
the classes it runs are on Maven Central in ``storm-core`` (package ``org.apache.storm.command``).
This runs those same classes, the way ``bin/storm`` does, against this run's ``storm.yaml``,
so a Storm user's habits work unchanged next to ``autotag topologies``.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from autotag.config import Settings
from autotag.errors import AutotagError
from autotag.ops.daemons.storm import conf_file, write_storm_conf
from autotag.ops.daemons.storm_home import ensure_storm_cli, java_bin


@dataclass(frozen=True)
class StormCommand:
    main_class: str
    usage: str


COMMANDS: dict[str, StormCommand] = {
    "list": StormCommand("org.apache.storm.command.ListTopologies", "list"),
    "activate": StormCommand("org.apache.storm.command.Activate", "activate NAME"),
    "deactivate": StormCommand("org.apache.storm.command.Deactivate", "deactivate NAME"),
    "kill": StormCommand("org.apache.storm.command.KillTopology", "kill NAME [-w SECS]"),
    "rebalance": StormCommand(
        "org.apache.storm.command.Rebalance",
        "rebalance NAME [-w SECS] [-n WORKERS] [-e COMPONENT=N]",
    ),
    "monitor": StormCommand(
        "org.apache.storm.command.Monitor", "monitor NAME [-i SECS] [-m COMPONENT]"
    ),
    "set_log_level": StormCommand(
        "org.apache.storm.command.SetLogLevel", "set_log_level NAME -l LOGGER=LEVEL[:TIMEOUT]"
    ),
    "heartbeats": StormCommand("org.apache.storm.command.Heartbeats", "heartbeats list|get PATH"),
    "admin": StormCommand("org.apache.storm.command.AdminCommands", "admin COMMAND ..."),
    "version": StormCommand("org.apache.storm.utils.VersionInfo", "version"),
}


def usage() -> str:
    lines = ["usage: storm [-c KEY=VALUE]... COMMAND [ARGS]", "", "commands (Storm's own classes):"]
    lines += [f"  storm {c.usage}" for c in COMMANDS.values()]
    return "\n".join(lines)


def split_options(args: Sequence[str]) -> tuple[list[str], str, list[str]]:
    """``[-c k=v]... COMMAND ARGS`` -> (config overrides, command, its arguments)."""
    overrides: list[str] = []
    rest = list(args)
    while rest and rest[0] in ("-c", "--config-option"):
        if len(rest) < 2 or "=" not in rest[1]:
            raise AutotagError("-c needs KEY=VALUE")
        overrides.append(rest[1])
        rest = rest[2:]
    if not rest:
        raise AutotagError("no command given\n" + usage())
    name, *cmd_args = rest
    if name not in COMMANDS:
        raise AutotagError(f"unknown storm command {name!r}\n" + usage())
    return overrides, name, cmd_args


def storm_argv(settings: Settings, args: Sequence[str]) -> list[str]:
    """The java command line ``bin/storm ARGS`` would run, pointed at this run's storm.yaml."""
    overrides, name, cmd_args = split_options(args)
    lib_cli = ensure_storm_cli(settings)
    conf = conf_file(settings)
    if not conf.is_file():
        write_storm_conf(settings)
    h = settings.storm_home
    classpath = os.pathsep.join([f"{h}/lib/*", f"{lib_cli}/*", f"{h}/extlib/*", str(conf.parent)])
    # bin/storm passes -c options URL-encoded and comma-separated in storm.options.
    options = ",".join(urllib.parse.quote_plus(o) for o in overrides)
    return [
        java_bin(),
        "-client",
        "-Ddaemon.name=",
        f"-Dstorm.options={options}",
        f"-Dstorm.home={h}",
        f"-Dstorm.log.dir={settings.log_dir / 'storm'}",
        f"-Dstorm.conf.file={conf}",
        f"-Dlog4j.configurationFile={h}/log4j2/cli.xml",
        "-Djava.net.preferIPv4Stack=true",
        "-cp",
        classpath,
        COMMANDS[name].main_class,
        *cmd_args,
    ]


def run(settings: Settings, args: Sequence[str]) -> int:
    """Run ``storm ARGS``; returns the command's exit status."""
    return subprocess.run(storm_argv(settings, args)).returncode
