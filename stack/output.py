"""One output stream for many processes, each line prefixed with its name."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO

# Foreground colours that read on dark and light terminals alike.
COLOURS = (36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96)


class Output:
    """Writes `name | line` for every process, like honcho and foreman do."""

    def __init__(self, stream: IO[str] | None = None, width: int = 8) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self.lock = threading.Lock()
        self.colours: dict[str, int] = {}
        # Colours only for a person at a terminal; logs and tests get plain text.
        self.colour = self.stream.isatty()

    def line(self, name: str, text: str) -> None:
        """Write one line of `name`'s output."""
        prefix = f"{name:<{self.width}} |"
        if self.colour:
            code = self.colours.setdefault(name, COLOURS[len(self.colours) % 11])
            prefix = f"\033[{code}m{prefix}\033[0m"
        with self.lock:
            try:
                self.stream.write(f"{prefix} {text}\n")
                self.stream.flush()
            except (OSError, ValueError):
                # The reader went away (a `| tee` that Ctrl-C also stopped, a
                # closed terminal): the processes must still be stopped in order.
                pass

    def say(self, text: str) -> None:
        """A line from the runner itself."""
        self.line("stack", text)

    def follow(
        self, name: str, pipe: IO[bytes], on_line: Callable[[str], None] | None = None
    ) -> threading.Thread:
        """Copy `pipe` line by line until it closes, in a daemon thread."""

        def copy() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    text = raw.decode(errors="replace").rstrip("\r\n")
                    self.line(name, text)
                    if on_line is not None:
                        on_line(text)

        thread = threading.Thread(target=copy, name=f"output-{name}", daemon=True)
        thread.start()
        return thread
