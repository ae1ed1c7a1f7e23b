"""What reading one streamed chunk costs a worker: ours against a bare socket.

`python -m bench.chunks --out F` (in the bench's environment) streams the same
answer from the OpenAI stand-in several times through the worker's own
`tasks.model_client.stream_chat` (on the stream engine's loop, the SSE bytes read
and the chunks folded as a model step folds them), then through a bare socket that
only counts the chunks as they arrive; CPU (user + system, this process) per chunk
for each. Run alone, one stream at a time, so the figure is the per-chunk cost and
not contention: it is what K concurrent streams multiply.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

RUNS = 3


def bare(url: str, body: bytes) -> int:
    """POST `body` over a plain socket and count the SSE events as bytes arrive."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nAuthorization: Bearer bench\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        events = 0
        while data := sock.recv(65536):
            events += data.count(b"data: ")
    return events - 1  # the closing `data: [DONE]`


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--text", default="count to 400")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
    import django

    django.setup()
    from django.conf import settings

    from tasks.model_client import stream_chat

    messages = [{"role": "user", "content": args.text}]
    texts = [0]

    def count(_text: str) -> None:
        texts[0] += 1

    stream_chat(messages, [], count, threading.Event())  # warm: client, pool
    texts[0], started = 0, time.process_time()
    for _ in range(RUNS):
        stream_chat(messages, [], count, threading.Event())
    ours = time.process_time() - started
    url = f"{settings.OPENAI_BASE_URL.rstrip('/')}/chat/completions"
    body = json.dumps(
        {"model": settings.OPENAI_MODEL, "messages": messages, "stream": True}
    ).encode()
    bare(url, body)
    events, started = 0, time.process_time()
    for _ in range(RUNS):
        events += bare(url, body)
    plain = time.process_time() - started
    result = {
        "runs": RUNS,
        "text_chunks": texts[0],
        "sdk_cpu_s": round(ours, 3),
        "sdk_us_per_chunk": round(ours * 1e6 / max(1, texts[0]), 1),
        "bare_events": events,
        "bare_cpu_s": round(plain, 3),
        "bare_us_per_chunk": round(plain * 1e6 / max(1, events), 1),
    }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
