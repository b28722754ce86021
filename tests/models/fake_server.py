"""What the fake model servers share: an HTTP server on 127.0.0.1, a script, a record.

Standard library only: ``http.server`` in a thread, on a port the system
picks. A fake (:class:`FakeServer`) answers each ``POST`` with
:meth:`FakeServer.respond`: a provider's fake turns its scripted replies
(first, in order, one per request) into that provider's wire format.
Every request is recorded (path, headers, JSON body, arrival time) so
tests can check what the agent sent.
"""

from __future__ import annotations

import abc
import http.server
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

ReplyT = TypeVar("ReplyT")
FakeT = TypeVar("FakeT", bound="FakeServer[Any]")


@dataclass(frozen=True)
class Received:
    """One request as the server got it."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def user_message(self) -> str:
        messages = self.body["messages"]
        return str([m for m in messages if m["role"] == "user"][-1]["content"])

    @property
    def system_message(self) -> str | None:
        """The first message of the system role (OpenAI's wire format), if any."""
        system = [m for m in self.body["messages"] if m["role"] == "system"]
        return str(system[0]["content"]) if system else None


@dataclass(frozen=True)
class Response:
    """What the server sends: a status, a body, headers."""

    status: int
    payload: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(document).encode(), headers=headers or {})


class FakeServer(abc.ABC, Generic[ReplyT]):
    """The server; a provider's fake says how a request is answered."""

    #: The path prefix of the provider's API, in ``base_url``.
    prefix = ""

    def __init__(self, *, api_key: str | None) -> None:
        self.api_key = api_key
        self.requests: list[Received] = []
        self._script: deque[ReplyT] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    def script(self, *replies: ReplyT) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def record(self, request: Received) -> None:
        """Record a request answered without a scripted reply (a wrong key)."""
        with self._lock:
            self.requests.append(request)

    def next_reply(self, request: Received, otherwise: ReplyT) -> ReplyT:
        """Record ``request``; the next scripted reply, or ``otherwise`` when none is left."""
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        return otherwise

    @abc.abstractmethod
    def respond(self, request: Received) -> Response | None:
        """The response to ``request`` (None: none, the server is stopping)."""

    def wait(self, delay_s: float) -> bool:
        """Wait ``delay_s``; True when the server stopped meanwhile (then send nothing)."""
        return bool(delay_s) and self._stopping.wait(delay_s)

    def _serve(self) -> None:
        # A short poll interval: stopping waits for the serving loop to notice.
        self._server.serve_forever(poll_interval=0.02)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # cuts every reply's delay short
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def running(fake: FakeT) -> Iterator[FakeT]:
    """Serve with ``fake`` while the block runs."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer[Any]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) leaves a broken pipe behind: expected.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        text = self.rfile.read(length)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Received(self.path, headers, body, time.monotonic())
        response = self.server.fake.respond(request)
        if response is not None:
            self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.payload)
