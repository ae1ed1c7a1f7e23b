"""The domain stands on its own: nothing under chat/ imports the worker package
(`tasks`), in any form (issue "One domain layer owns the turn")."""

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
