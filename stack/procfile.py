"""Reading the Procfile, the single list of the processes the app runs as."""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9_-]+")


class ProcfileError(ValueError):
    """The Procfile is missing or has a line that is not `name: command`."""


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
