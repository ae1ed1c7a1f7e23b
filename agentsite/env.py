"""Reading settings from the environment and an optional `.env` file."""

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import dotenv
from django.core.exceptions import ImproperlyConfigured


def load_dotenv(path: Path) -> None:
    """Set variables from `path` that the real environment does not already set.

    python-dotenv reads it as a shell would: quotes, `export`, and `# comments`
    after a value (which are not part of it).
    """
    if path.is_file():
        dotenv.load_dotenv(path, override=False)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be an integer, not {value!r}"
        ) from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "").strip()
    return [item.strip() for item in value.split(",") if item.strip()] or default


def database_from_url(url: str, base_dir: Path, pool_size: int = 0) -> dict[str, Any]:
    """Translate `sqlite:///path` or `postgres://user@host:port/name` for Django.

    With `pool_size` > 0, PostgreSQL connections come from a psycopg pool of at most
    that many per process: a worker runs hundreds of turns on threads that each
    borrow one only while they touch the database, and ASGI's thread per request
    would otherwise open a connection per request.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        name = unquote(parts.path.removeprefix("/")) or str(base_dir / "db.sqlite3")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name if Path(name).is_absolute() else str(base_dir / name),
            # Workers and web processes write at once: WAL lets readers go on, and
            # IMMEDIATE transactions take the write lock up front instead of failing
            # with "database is locked" when a read lock must be upgraded.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file (worker processes of the end-to-end tests open it too), one per
            # test run so that runs side by side do not share it.
            "TEST": {"NAME": str(base_dir / f".test-db-{os.getpid()}.sqlite3")},
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.removeprefix("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": {**options, **_pool(pool_size)},
            # One test database per test run, so runs side by side do not collide.
            "TEST": {
                "NAME": f"test_{unquote(parts.path[1:]) or 'postgres'}_{os.getpid()}"
            },
            # A pooled connection goes back to the pool when Django closes it.
            "CONN_MAX_AGE": 0 if pool_size else 60,
            "CONN_HEALTH_CHECKS": not pool_size,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL must start with sqlite:/// or postgres://, not {parts.scheme}://"
    )


def _pool(size: int) -> dict[str, Any]:
    if size <= 0:
        return {}
    # min_size 4: an idle process keeps a few connections, not `size` (a burst of
    # turns then finds them open: opening one costs 10-50 ms); a thread that
    # finds the pool empty waits up to `timeout` seconds for one to come back.
    return {"pool": {"min_size": min(4, size), "max_size": size, "timeout": 30}}
