"""The domain stands on its own: nothing under chat/ imports the worker package
(`tasks`), in any form (issue "One domain layer owns the turn"), and only the
interfaces import the API layer (issue "A house that is quick to change")."""

import ast
from pathlib import Path

CHAT = Path(__file__).resolve().parents[2] / "chat"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
            "__import__",
            "import_module",
        ):
            found |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    return found


def test_nothing_under_chat_imports_the_worker_package() -> None:
    sources = sorted(CHAT.rglob("*.py"))
    assert len(sources) > 40
    offenders = {
        str(path.relative_to(CHAT)): sorted(
            m for m in imported_modules(path) if m == "tasks" or m.startswith("tasks.")
        )
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# The interfaces: they speak HTTP, REST, WebSocket or the admin, and call the domain.
# Only these may import the API layer (DRF, the API package and its serializers).
INTERFACES = (
    "api/",  # the REST views and serializers, their fields, parsers, error handler
    "auth.py",  # DRF's token authentication, for the API and the socket
    "http.py",  # request types for views behind a login
    "views.py",
    "decide.py",
    "consumers.py",
    "admin/",
    "urls.py",
    "routing.py",
)
API_LAYER = ("chat.api", "chat.serializers", "rest_framework", "drf_spectacular")


def absolute_imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved (`from .api import
    X` in chat/snapshot.py would be `chat.api`)."""
    package = list(path.relative_to(CHAT.parent).with_suffix("").parts)[:-1]
    found = imported_modules(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            module = [*base, *(node.module.split(".") if node.module else [])]
            found.add(".".join(module))
            # `from . import serializers` imports a module by its name.
            found |= {".".join([*module, alias.name]) for alias in node.names}
    return found


def _is_api(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in API_LAYER)


def test_the_domain_imports_nothing_of_the_api_layer() -> None:
    """Services, models, payloads, realtime, eligibility, tools...: none imports
    DRF, the serializers or the API package; the interfaces listed may."""
    for entry in INTERFACES:
        assert (CHAT / entry).exists(), entry  # the list names real modules
    domain = [
        path
        for path in sorted(CHAT.rglob("*.py"))
        if not str(path.relative_to(CHAT)).startswith(INTERFACES)
        and "migrations" not in path.parts
    ]
    assert len(domain) > 30
    assert CHAT / "services" / "events.py" in domain
    offenders = {
        str(path.relative_to(CHAT)): sorted(filter(_is_api, absolute_imports(path)))
        for path in domain
    }
    assert {k: v for k, v in offenders.items() if v} == {}


# Queryset and manager methods: a consumer that calls one queries the database itself.
ORM_ATTRIBUTES = {
    "objects", "all", "filter", "exclude", "exists", "first", "last", "values",
    "values_list", "select_related", "prefetch_related", "select_for_update",
    "annotate", "aggregate", "order_by", "get_or_create", "update_or_create",
    "bulk_create", "bulk_update", "refresh_from_db", "save", "delete",
}  # fmt: skip
MODEL_MODULES = {"chat.models", "django.contrib.auth.models", "django.db"}


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """The modules imported outside `if TYPE_CHECKING:`, relative ones as chat.*."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                found += [(inner.lineno, alias.name) for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                parts = ["chat"] * bool(inner.level) + [inner.module or ""]
                base = ".".join(part for part in parts if part)
                found.append((inner.lineno, base))
                found += [(inner.lineno, f"{base}.{a.name}") for a in inner.names]
    return found


def test_the_consumer_reaches_the_database_only_through_services() -> None:
    """chat/consumers.py is a frame protocol (issue "A house that is quick to
    change"): no queryset or manager call, and models named for type hints only."""
    path = CHAT / "consumers.py"
    tree = ast.parse(path.read_text(), str(path))
    queries = sorted(
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ORM_ATTRIBUTES
    )
    models = sorted(
        f"line {line}: {name}"
        for line, name in _runtime_imports(tree)
        if name in MODEL_MODULES or name.startswith(("chat.models.", "django.db."))
    )
    assert (queries, models) == ([], [])
