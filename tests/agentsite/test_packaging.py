"""One version and the project's metadata: what a packager, pip and an API client
read agree."""

import tomllib
from pathlib import Path

import pytest
from rest_framework.test import APIClient

import agentsite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


@pytest.mark.django_db
def test_the_api_and_the_package_have_one_version(project: dict) -> None:
    # pyproject.toml takes the version from the package...
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "agentsite.__version__"}
    # ...and the OpenAPI document states the same one.
    schema = APIClient().get("/api/schema", HTTP_ACCEPT="application/json").json()
    assert schema["info"]["version"] == agentsite.__version__
    assert agentsite.__version__.count(".") == 2


def test_the_license_is_mit_and_shipped(project: dict) -> None:
    meta = project["project"]
    assert meta["license"] == "MIT"
    assert meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    # PEP 639: with an SPDX expression, no license classifier.
    assert not [c for c in meta["classifiers"] if c.startswith("License ::")]


def test_the_metadata_is_complete(project: dict) -> None:
    meta = project["project"]
    assert meta["authors"] and all(a.get("name") for a in meta["authors"])
    assert {"Homepage", "Documentation", "Issues"} <= set(meta["urls"])
    assert len(meta["keywords"]) >= 5
    assert "Framework :: Django" in meta["classifiers"]
    python = [c for c in meta["classifiers"] if c.startswith("Programming Language")]
    assert "Programming Language :: Python :: 3.11" in python
