"""`python -m stack run` starts the whole system; `python -m stack test [args]`
runs pytest with `args` next to a Redis it can rely on."""

from __future__ import annotations

import sys

USAGE = """usage: python -m stack run
       python -m stack test [pytest arguments]"""


def main(argv: list[str]) -> int:
    """Dispatch to the command `argv` names."""
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "run" and not rest:
        from .runner import main as run

        return run()
    if command == "test":
        from .testing import main as test

        return test(rest)
    print(USAGE, file=sys.stderr)
    return 0 if command in {"-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
