"""An Anthropic Messages API server for the tests, on 127.0.0.1.

It serves ``POST /v1/messages`` as the API does (see
:mod:`tests.models.fake_server` for the server, the script and the
record): scripted replies first (in order, one per request), then the
default reply (an echo of the last user message). A request without the
expected ``x-api-key`` gets a 401 ``authentication_error`` whose message
echoes the key it got, as a careless endpoint might; one without an
``anthropic-version`` header or ``max_tokens`` gets the API's 400
``invalid_request_error``. A request that forces a tool (``tool_choice``
``{"type": "tool", "name": ...}``) is answered with a ``tool_use`` block
of that name, whose input is the reply's ``tool_input``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from tests.models.fake_server import FakeServer, Received, Response, running

#: The error type the API sends with each status the tests use.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Reply:
    """One scripted reply.

    ``status`` 200 sends a message: a ``tool_use`` block with ``tool_input``
    when the request forces a tool, else a text block of ``text`` (and
    ``stop_reason``), with the given usage. Another status sends the API's
    error body (its type from :data:`ERROR_TYPES`, ``error`` its message).
    ``delay_s`` waits before answering.
    """

    text: str = "ok"
    _: KW_ONLY
    tool_input: Any = None
    status: int = 200
    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    stop_reason: str = "end_turn"
    error: str = "something went wrong"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeAnthropic(FakeServer[Reply]):
    """The server; use :func:`serving` to start and stop it."""

    def __init__(self, *, api_key: str | None = "sk-ant-test-key") -> None:
        super().__init__(api_key=api_key)

    def respond(self, request: Received) -> Response | None:
        if request.path != "/v1/messages":
            return _error(404, f"Not found: {request.path}")
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            self.record(request)
            return _error(401, f"invalid x-api-key: {request.headers.get('x-api-key', '')}")
        if "anthropic-version" not in request.headers:
            self.record(request)
            return _error(400, "anthropic-version: header is required")
        if not isinstance(request.body, dict) or "max_tokens" not in request.body:
            self.record(request)
            return _error(400, "max_tokens: Field required")
        reply = self.next_reply(request, Reply(f"echo: {request.user_message}"))
        if self.wait(reply.delay_s):
            return None
        if reply.status != 200:
            return _error(reply.status, reply.error, reply.headers)
        return Response.json(200, _message(request.body, reply), reply.headers)


def serving(*, api_key: str | None = "sk-ant-test-key") -> AbstractContextManager[FakeAnthropic]:
    """The server, running while the block runs."""
    return running(FakeAnthropic(api_key=api_key))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    error = {"type": ERROR_TYPES[status], "message": message}
    return Response.json(status, {"type": "error", "error": error}, headers)


def _message(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    forced = request.get("tool_choice")
    content: dict[str, Any]
    stop_reason = reply.stop_reason
    if isinstance(forced, dict) and forced.get("type") == "tool":
        content = {
            "type": "tool_use",
            "id": "toolu_test",
            "name": forced["name"],
            "input": reply.tool_input,
        }
        stop_reason = "tool_use"
    else:
        content = {"type": "text", "text": reply.text}
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": [content],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": reply.cache_creation_input_tokens,
            "cache_read_input_tokens": reply.cache_read_input_tokens,
            "output_tokens": reply.output_tokens,
        },
    }
