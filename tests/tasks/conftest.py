"""The local OpenAI and Linear stand-ins, served from threads of the test process.

The agent's steps run in-process against them, over the same wire protocols the real
services speak: the settings point the clients at the threads, and the `model`
fixture forgets the cached OpenAI client so it is built for the new URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from chat.models import Room
from chat.realtime import publisher, room_channel
from chat.redis_client import redis_client
from standins import github_server, linear_server, openai_server
from tasks import model_client
from tests.chat.queues import task_queue  # noqa: F401  (a fixture)

OPENAI_KEY = "sk-test-0penai-5ecret-key-do-not-show"
LINEAR_KEY = "lin_api_TestSecret0123456789abcdef"
GITHUB_TOKEN = "ghp_RetryTest0123456789abcdefABCDEFGH"


@dataclass
class Model:
    """The OpenAI stand-in, steered through its control endpoints."""

    server: openai_server.StandinServer

    def _control(self, name: str, body: dict | None = None) -> Any:
        # Without a body when there is none: the stand-in leaves an unread body on
        # the kept-alive connection, where it reads as the next request.
        url = f"{self.server.root_url}/_control/{name}"
        response = requests.post(url, json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def script(self, *replies: dict) -> None:
        """Queue answers: `{"text": ..., "tool_calls": [{"name", "arguments"}]}`."""
        self._control("script", {"replies": list(replies)})

    def faults(self, *faults: dict) -> None:
        """Queue faults: `{"status": 429}`, `{"disconnect_after_chunks": 3}`, ..."""
        self._control("faults", {"faults": list(faults)})

    def config(self, **changes: object) -> None:
        """Change `token_delay` (seconds between streamed tokens) for this test."""
        self._control("config", changes)

    def calls(self) -> list[dict]:
        """Every chat completion request the app sent, oldest first."""
        url = f"{self.server.root_url}/_control/requests"
        logged = requests.get(url, timeout=5).json()["requests"]
        return [r for r in logged if r["path"] == openai_server.COMPLETIONS_PATH]


@dataclass
class Linear:
    """The Linear stand-in; `effects()` lists the mutations it applied."""

    server: linear_server.LinearStandin

    def _url(self, name: str) -> str:
        return self.server.url.replace("/graphql", f"/_control/{name}")

    def faults(self, *faults: dict) -> None:
        """Queue faults: `{"op": "issueDelete", "status": 503, "after_apply": True}`."""
        response = requests.post(
            self._url("faults"), json={"faults": faults}, timeout=5
        )
        response.raise_for_status()

    def effects(self) -> list[dict]:
        return requests.get(self._url("effects"), timeout=5).json()["effects"]


@pytest.fixture(autouse=True)
def _short_write_windows(settings) -> None:
    """A retry after a write was cut off waits until that write can no longer land
    (docs/recovery.md); short bounds keep those waits to seconds here."""
    settings.GITHUB_CONNECT_TIMEOUT = 0.5
    settings.GITHUB_HOLD_SECONDS = 1
    settings.LINEAR_TIMEOUT = 3
    settings.LINEAR_HOLD_SECONDS = 1


@pytest.fixture(scope="session")
def openai_standin() -> Iterator[openai_server.StandinServer]:
    server = openai_server.serve_in_thread(token_delay=0, quiet=True)
    yield server
    server.close()


@pytest.fixture(scope="session")
def linear_standin() -> Iterator[linear_server.LinearStandin]:
    server = linear_server.make_server("127.0.0.1", 0, api_key=LINEAR_KEY)
    thread = linear_server.serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def github_standin() -> Iterator[github_server.GitHubStandin]:
    standin = github_server.make_server("127.0.0.1", 0, token=GITHUB_TOKEN)
    github_server.serve_in_thread(standin)
    yield standin
    standin.shutdown()
    standin.server_close()


@pytest.fixture
def github(
    github_standin: github_server.GitHubStandin, settings
) -> github_server.GitHubStandin:
    """The GitHub stand-in, reset, with the settings pointing at it."""
    requests.post(
        f"{github_standin.url}/_control/reset", json={}, timeout=5
    ).raise_for_status()
    settings.GITHUB_API_URL = github_standin.url
    settings.GITHUB_TOKEN = GITHUB_TOKEN
    settings.GITHUB_REPOSITORY = "demo/agentsite"
    return github_standin


def github_control(
    server: github_server.GitHubStandin, name: str, body: dict | None = None
) -> dict:
    """POST `body` to the GitHub stand-in's `/_control/<name>` (GET without one)."""
    url = f"{server.url}/_control/{name}"
    answer = (
        requests.post(url, json=body, timeout=5)
        if body is not None
        else requests.get(url, timeout=5)
    )
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def model(openai_standin: openai_server.StandinServer, settings) -> Iterator[Model]:
    """The model the worker talks to, fresh: no faults, no script, an empty log."""
    stand_in = Model(openai_standin)
    stand_in._control("reset")
    settings.OPENAI_BASE_URL = openai_standin.base_url
    settings.OPENAI_API_KEY = OPENAI_KEY
    model_client._client.cache_clear()
    yield stand_in
    model_client._client.cache_clear()


@pytest.fixture
def linear(linear_standin: linear_server.LinearStandin, settings) -> Linear:
    """Linear as the tools reach it, reseeded with its twenty issues."""
    requests.post(
        linear_standin.url.replace("/graphql", "/_control/reset"), timeout=5
    ).raise_for_status()
    settings.LINEAR_API_URL = linear_standin.url
    settings.LINEAR_API_KEY = LINEAR_KEY
    return Linear(linear_standin)


@pytest.fixture
def room_feed(room: Room) -> Iterator[Callable[[], list[dict]]]:
    """What watchers of the room hear (durable events and deltas), as frames.

    Each call returns the frames published since the previous call, in order.
    """
    publisher.flush()  # frames of earlier tests must not show up here
    channel = room_channel(room.pk)
    pubsub = redis_client().pubsub()
    pubsub.subscribe(channel)
    # Subscribed once Redis confirms it; frames published before that are lost.
    confirmed = pubsub.get_message(timeout=2)
    assert confirmed and confirmed["type"] == "subscribe", confirmed
    end = "end-of-feed"

    def read() -> list[dict]:
        publisher.flush()
        # Published after everything the publisher sent, so it arrives after it too.
        redis_client().publish(channel, end)
        frames = []
        while (message := pubsub.get_message(timeout=2)) is not None:
            if message["type"] != "message":
                continue
            if message["data"] == end:
                return frames
            frames.append(json.loads(message["data"].partition(" ")[2]))
        raise AssertionError("the room's feed went silent")

    yield read
    pubsub.close()


def deltas(frames: list[dict]) -> list[tuple[int, str]]:
    """The (offset, text) of every delta among the frames."""
    return [(f["offset"], f["text"]) for f in frames if f["type"] == "delta"]


def applied(frames: list[dict]) -> str:
    """A message's text as a client builds it from the deltas it was sent."""
    content = ""
    for offset, text in deltas(frames):
        content = content[:offset] + text
    return content
