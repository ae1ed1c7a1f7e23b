"""`python -m bench.chaos --minutes N --seed S`: one run; exit 1 on a violation."""

import argparse
import signal
import sys
from pathlib import Path

from .run import main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("--minutes", type=float, default=10.0, help="of chaos")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--users", type=int, default=8, help="actors posting and voting"
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        default=1.8,
        help="seconds between kills, about (1.8: some 330 in ten minutes)",
    )
    parser.add_argument(
        "--restart-every",
        type=float,
        default=30.0,
        help="seconds, about, between crashes of Redis or PostgreSQL (alternating)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="logs and data (a temp dir)"
    )
    args = parser.parse_args(argv)
    # A SIGTERM (a test's timeout, a CI cancel) stops everything the run started,
    # its PostgreSQL cluster included, which would otherwise outlive it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return main(
        args.minutes,
        args.seed,
        args.users,
        args.kill_every,
        args.restart_every,
        args.out,
    )


if __name__ == "__main__":
    sys.exit(cli())
