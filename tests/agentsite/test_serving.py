"""Served as in production (DEBUG=0), by a real web process over plain HTTP: hashed,
gzipped static files with far-future caching, no 500 for a missing manifest entry,
and /healthz answering a load balancer's plain-HTTP probe."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "test-serving-" + "x" * 50,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
}
A_YEAR_OR_MORE = re.compile(r"max-age=(\d+)")


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STATIC_ROOT of our own, written by `manage.py collectstatic --noinput`."""
    root = tmp_path_factory.mktemp("static") / "root"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, "STATIC_ROOT": str(root)},
        check=True,
    )
    return root


def stylesheet(base: str) -> str:
    page = requests.get(f"{base}/accounts/login/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'href="(/static/css/site[^"]*\.css)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_static_files_are_hashed_gzipped_and_cached_for_a_year(stack, collected):
    base = stack.web(**PRODUCTION, STATIC_ROOT=str(collected))
    css = stylesheet(base)
    assert re.fullmatch(r"/static/css/site\.[0-9a-f]{12}\.css", css), css

    answer = requests.get(
        f"{base}{css}", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Encoding"] == "gzip"
    assert "immutable" in answer.headers["Cache-Control"]
    max_age = A_YEAR_OR_MORE.search(answer.headers["Cache-Control"])
    assert max_age and int(max_age.group(1)) >= 365 * 24 * 3600

    # The room page's modules import each other by their hashed names too.
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    room_js = requests.get(f"{base}/static/{manifest['js/room.js']}", timeout=10)
    assert f'"./{Path(manifest["js/messages.js"]).name}"' in room_js.text


def test_a_missing_manifest_entry_is_not_a_500(stack, collected, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(collected, stale)
    manifest = json.loads((stale / "staticfiles.json").read_text())
    del manifest["paths"]["css/site.css"]
    (stale / "staticfiles.json").write_text(json.dumps(manifest))

    base = stack.web(**PRODUCTION, STATIC_ROOT=str(stale))
    assert stylesheet(base) == "/static/css/site.css"


def test_healthz_answers_plain_http_while_https_redirects_are_on(stack, collected):
    env = {**PRODUCTION, "SECURE_SSL_REDIRECT": "1", "STATIC_ROOT": str(collected)}
    base = stack.web(**env)
    health = requests.get(f"{base}/healthz", allow_redirects=False, timeout=10)
    assert health.status_code == 200, health.text
    login = requests.get(f"{base}/accounts/login/", allow_redirects=False, timeout=10)
    assert login.status_code == 301
    assert login.headers["Location"].startswith("https://")
