"""Reading settings from the environment and an optional `.env` file."""

import hashlib
import json
import os
import re
from collections.abc import Mapping
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


MCP_SERVER_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


def mcp_servers(raw: str) -> list[dict[str, Any]]:
    """`AGENT_MCP_SERVERS` checked: a JSON list of {"name", "url", "headers"?} or
    {"name", "command": [...], "env"?}, each with an optional "trust_annotations"
    (a boolean); a mistake stops the start with its reason."""
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured("AGENT_MCP_SERVERS must be a JSON list") from None
    if not isinstance(servers, list):
        raise ImproperlyConfigured("AGENT_MCP_SERVERS must be a JSON list")
    names: set[str] = set()
    for server in servers:
        _check_mcp_server(server, names)
    return servers


def _check_mcp_server(server: object, names: set[str]) -> None:
    def refuse(why: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"AGENT_MCP_SERVERS: {why}")

    if not isinstance(server, dict):
        raise refuse("each server is a JSON object")
    name = server.get("name")
    if not isinstance(name, str) or not MCP_SERVER_NAME.fullmatch(name):
        raise refuse(
            f"name {name!r} must be lowercase letters, digits and '-' (tools are "
            "offered as <name>__<tool>)"
        )
    if name in names:
        raise refuse(f"two servers are named {name!r}")
    names.add(name)
    url, command = server.get("url"), server.get("command")
    if (url is None) == (command is None):
        raise refuse(f"{name}: give either url (Streamable HTTP) or command (stdio)")
    if url is not None and not (
        isinstance(url, str) and url.startswith(("http://", "https://"))
    ):
        raise refuse(f"{name}: url must be an http(s) URL")
    if command is not None and not (
        isinstance(command, list)
        and command
        and all(isinstance(word, str) for word in command)
    ):
        raise refuse(f"{name}: command must be a non-empty list of strings")
    for key in ("headers", "env"):
        value = server.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise refuse(f"{name}: {key} must be an object of strings")
    if not isinstance(server.get("trust_annotations", False), bool):
        raise refuse(f"{name}: trust_annotations must be true or false")
    unknown = set(server) - {
        "name",
        "url",
        "headers",
        "command",
        "env",
        "trust_annotations",
    }
    if unknown:
        raise refuse(f"{name}: unknown fields {sorted(unknown)}")


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


def redis_namespace(prefix: str, database: Mapping[str, Any]) -> str:
    """What every Redis key, channel and queue of a deployment starts with.

    `prefix` (REDIS_PREFIX), then a short hash of the database the deployment uses:
    two deployments on one Redis server stay apart even with the same prefix, and
    whatever database numbers their URLs name (pub/sub channels ignore those). The
    web, worker and beat processes of one deployment share DATABASE_URL, so they
    agree. The user and password are left out: they do not change which data it is.
    """
    engine = str(database.get("ENGINE", ""))
    port = str(database.get("PORT") or "")
    if engine.endswith("postgresql"):
        port = port or "5432"
    host = str(database.get("HOST") or "").lower()
    identity = "\n".join([engine, host, port, str(database.get("NAME", ""))])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    # A fixed-length suffix: two namespaces are equal only if prefix and hash are.
    return f"{prefix}-{digest}"
