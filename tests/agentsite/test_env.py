"""Settings from `.env`: read as a shell reads it, never over the real environment."""

import os

import pytest

from agentsite.env import load_dotenv

NAMES = ["AGENTSITE_T_MODEL", "AGENTSITE_T_PLAIN", "AGENTSITE_T_HASH"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        # Set, then deleted: what the test loads is removed again afterwards.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("AGENTSITE_T_SET", "from the environment")


def test_inline_comments_quotes_and_export_are_read_as_a_shell_would(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\n"
        'AGENTSITE_T_MODEL="gpt-4o" # the model\n'
        "export AGENTSITE_T_PLAIN=plain   # trailing\n"
        "AGENTSITE_T_HASH='a # b'\n"
        "AGENTSITE_T_SET=from the file\n"
    )
    load_dotenv(env)
    assert os.environ["AGENTSITE_T_MODEL"] == "gpt-4o"
    assert os.environ["AGENTSITE_T_PLAIN"] == "plain"
    assert os.environ["AGENTSITE_T_HASH"] == "a # b"
    assert os.environ["AGENTSITE_T_SET"] == "from the environment"


def test_a_missing_file_sets_nothing(tmp_path):
    load_dotenv(tmp_path / ".env")
    assert "AGENTSITE_T_MODEL" not in os.environ
