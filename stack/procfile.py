"""Reading the Procfile, the single list of the processes the app runs as."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9_-]+")
# `$VAR`, `${VAR}` and `${VAR:-default}`: what the Procfile may use of the shell.
VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


class ProcfileError(ValueError):
    """The Procfile is missing, has a line that is not `name: command`, or names
    a variable the environment does not set."""


def read_procfile(path: Path) -> dict[str, str]:
    """The `name: command` entries of `path`, in their order."""
    if not path.is_file():
        raise ProcfileError(f"{path} is missing")
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not NAME.fullmatch(name) or not command:
            raise ProcfileError(f"{path}:{number}: expected `name: command`")
        if name in entries:
            raise ProcfileError(f"{path}:{number}: {name!r} is named twice")
        entries[name] = command
    if not entries:
        raise ProcfileError(f"{path} names no process")
    return entries


def command_line(command: str, env: Mapping[str, str]) -> list[str]:
    """`command` as an argv: split into words as a shell does, then the variables
    of each word expanded from `env`.

    A word stays one argument whatever its value holds, as if it were quoted. A
    variable that is unset or empty takes its `:-` default; without one it is an
    error, not a silent empty argument.
    """

    def value(match: re.Match) -> str:
        name = match["braced"] or match["bare"]
        if found := env.get(name, ""):
            return found
        if match["default"] is not None:
            return match["default"]
        raise ProcfileError(f"`{command}` needs ${name}, which is not set")

    return [VARIABLE.sub(value, word) for word in shlex.split(command)]


def procfile_argv(kind: str, env: Mapping[str, str], path: Path) -> list[str]:
    """The command line of the Procfile's process type `kind`, expanded from `env`."""
    entries = read_procfile(path)
    if kind not in entries:
        raise ProcfileError(f"{path} has no {kind!r} process")
    return command_line(entries[kind], env)
