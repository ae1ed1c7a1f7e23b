"""The webhook sender's pinned connection against a real TLS server (http.server with
a self-signed certificate made by openssl): it connects to the vetted address, and
TLS still checks the certificate of the host name."""

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests

from tasks.deliver import _pinned


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert)
    server.shutdown()
    server.server_close()


def test_https_goes_to_the_vetted_address_and_checks_the_hosts_certificate(
    tls_server,
):
    port, cert = tls_server
    headers: dict[str, str] = {}
    url, session = _pinned(f"https://hooks.test:{port}/x", "127.0.0.1", headers)
    session.verify = cert
    assert session.post(url, data=b"{}", headers=headers, timeout=5).status_code == 204

    headers = {}
    url, session = _pinned(f"https://other.test:{port}/x", "127.0.0.1", headers)
    session.verify = cert
    with pytest.raises(requests.exceptions.SSLError):
        session.post(url, data=b"{}", headers=headers, timeout=5)


@pytest.mark.django_db
def test_a_mail_django_refuses_to_send_is_a_counted_failure(alice, room, settings):
    # A subject with a newline (a room named before names were one line) makes
    # Django raise BadHeaderError, not an SMTP error: still an attempt that failed,
    # and after the last one the delivery is given up, not retried forever.
    from chat.models import Delivery
    from tasks.tasks import deliver as deliver_task

    settings.DELIVERY_RETRY_BASE, settings.DELIVERY_MAX_ATTEMPTS = 0.01, 2
    delivery = Delivery.objects.create(
        key="email:test",
        channel=Delivery.Channel.EMAIL,
        event="action.pending",
        room=room,
        to="alice@example.com",
        subject="[Tri\nage] delete_issue waits for your approval",
        body="...",
    )
    deliver_task.apply(args=[str(delivery.pk)])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert "BadHeaderError" in delivery.last_error
    assert delivery.lease_until is None


@pytest.mark.django_db
def test_a_delivery_that_gives_up_logs_one_error_line(alice, room, settings, caplog):
    import logging

    from chat.models import Delivery
    from tasks.tasks import deliver as deliver_task

    settings.DELIVERY_RETRY_BASE, settings.DELIVERY_MAX_ATTEMPTS = 0.01, 3
    delivery = Delivery.objects.create(
        key="email:test",
        channel=Delivery.Channel.EMAIL,
        event="action.pending",
        room=room,
        to="alice@example.com",
        subject="[Tri\nage] refused by Django",
        body="...",
    )
    with caplog.at_level(logging.INFO):
        deliver_task.apply(args=[str(delivery.pk)])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.delivery_id, r.room) for r in errors] == [(str(delivery.pk), "triage")]
    assert "gave up after 3 attempts" in errors[0].getMessage()
    # The attempts before the last one were warnings, not errors.
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3
