"""Real peers for the outbox: an HTTP receiver of webhooks and an SMTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from stack.procs import free_port


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An http.server in a thread: answers the statuses of `script` in turn (then
    200), and keeps every request it got."""

    script: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    server: ThreadingHTTPServer | None = None
    serving: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def reserve(self) -> Receiver:
        """Take a port of its own without answering on it yet: connections to it
        are refused (a receiver that is down) until `start`, and no other process
        of a parallel run can take the port meanwhile."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.hits.append(
                    Hit(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.url + "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        # Bound (port 0: the kernel picks a free one) but not listening.
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", self.port), Handler, bind_and_activate=False
        )
        try:
            self.server.server_bind()
        except OSError:
            self.server.server_close()
            self.server = None
            raise
        self.port = self.server.server_address[1]
        return self

    def start(self) -> Receiver:
        if self.server is None:
            self.reserve()
        assert self.server is not None
        self.server.server_activate()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.serving = True
        return self

    def stop(self) -> None:
        if self.server is not None:
            if self.serving:
                self.server.shutdown()
            self.server.server_close()
            self.server, self.serving = None, False


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


class _Inbox:
    def __init__(self) -> None:
        self.mails: list[Envelope] = []

    async def handle_DATA(
        self, server: object, session: object, envelope: Envelope
    ) -> str:
        self.mails.append(envelope)
        return "250 OK"


@dataclass
class Smtp:
    port: int
    inbox: _Inbox

    @property
    def mails(self) -> list[Envelope]:
        return self.inbox.mails


@pytest.fixture
def smtp(settings) -> Iterator[Smtp]:
    """aiosmtpd in this process; Django's SMTP backend pointed at it."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = False
    yield Smtp(port, inbox)
    controller.stop()
