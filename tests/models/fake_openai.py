"""An OpenAI-compatible chat-completions server for the tests, on 127.0.0.1.

Standard library only: ``http.server`` in a thread, on a port the system
picks. It serves ``POST /v1/chat/completions``: scripted replies first (in
order, one per request), then the default reply (an echo of the last user
message). A reply may be a chat completion with usage fields, an error
with any status and headers, a body that is not JSON, and may come after
a delay. Every request is recorded (headers, JSON body, arrival time) so
tests can check what the agent sent. A request without the expected
``Authorization: Bearer`` key gets a 401 whose message echoes the key it
got, as a careless endpoint might.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted reply.

    ``status`` 200 sends a chat completion of ``content`` with the given
    usage (``None`` leaves the usage out); another status sends an OpenAI
    error body with ``error`` as its message and ``error_type`` as its type.
    ``cached_tokens`` reports that many of the prompt tokens as read from the
    prompt cache. ``raw`` sends those bytes instead of either body.
    ``delay_s`` waits before answering.

    ``worst_case_template_tokens`` reports instead the most a byte-level
    tokenizer (every token at least one UTF-8 byte) could count: a prompt
    token per byte of every message's text, plus this many tokens of chat
    template per message and once more for the reply's header, and the
    request's ``max_tokens`` of output.
    """

    content: str | None = "ok"
    _: KW_ONLY
    status: int = 200
    prompt_tokens: int | None = 10
    completion_tokens: int | None = 5
    error: str = "something went wrong"
    error_type: str = "error"
    cached_tokens: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    refusal: str | None = None
    delay_s: float = 0.0
    worst_case_template_tokens: int | None = None


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
        system = [m for m in self.body["messages"] if m["role"] == "system"]
        return str(system[0]["content"]) if system else None


class FakeOpenAI:
    """The server; use :func:`serving` to start and stop it."""

    def __init__(self, *, api_key: str | None = "sk-test-key") -> None:
        self.api_key = api_key
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def _next(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        return Reply(content=f"echo: {request.user_message}")

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
def serving(*, api_key: str | None = "sk-test-key") -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=api_key)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) leaves a broken pipe behind: expected.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length", "0"))
        text = self.rfile.read(length)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = Received(self.path, headers, body, time.monotonic())
        expected = None if fake.api_key is None else f"Bearer {fake.api_key}"
        if expected is not None and headers.get("authorization") != expected:
            with fake._lock:
                fake.requests.append(request)
            given = headers.get("authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {given}"
            self._send(401, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        reply = fake._next(request)
        if reply.delay_s and fake._stopping.wait(reply.delay_s):
            return
        if reply.raw is not None:
            self._send_bytes(reply.status, reply.raw, "text/plain", reply.headers)
        elif reply.status == 200:
            self._send(200, _completion(body, reply), reply.headers)
        else:
            kind = reply.error_type
            error = {"error": {"message": reply.error, "type": kind, "code": reply.status}}
            self._send(reply.status, error, reply.headers)

    def _send(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        self._send_bytes(status, payload, "application/json", headers or {})

    def _send_bytes(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _completion(request: Any, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.refusal is not None:
        message["refusal"] = reply.refusal
    completion: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "?") if isinstance(request, dict) else "?",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    prompt_tokens, completion_tokens = reply.prompt_tokens, reply.completion_tokens
    if reply.worst_case_template_tokens is not None:
        prompt_tokens, completion_tokens = _worst_case(request, reply.worst_case_template_tokens)
    if prompt_tokens is not None and completion_tokens is not None:
        completion["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if reply.cached_tokens is not None:
            completion["usage"]["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return completion


def worst_case_prompt_tokens(messages: list[dict[str, str]], template_tokens: int) -> int:
    """The most prompt tokens a byte-level tokenizer could count for ``messages``."""
    text_bytes = sum(len(message["content"].encode("utf-8")) for message in messages)
    return text_bytes + template_tokens * (len(messages) + 1)


def _worst_case(request: Any, template_tokens: int) -> tuple[int, int]:
    prompt = worst_case_prompt_tokens(request["messages"], template_tokens)
    return prompt, int(request["max_tokens"])
