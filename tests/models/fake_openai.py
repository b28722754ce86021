"""An OpenAI-compatible chat-completions server for the tests, on 127.0.0.1.

It serves ``POST /v1/chat/completions`` (see :mod:`tests.models.fake_server`
for the server, the script and the record): scripted replies first (in
order, one per request), then the default reply (an echo of the last user
message). A reply may be a chat completion with usage fields, an error
with any status and headers, a body that is not JSON, and may come after
a delay. A request without the expected ``Authorization: Bearer`` key
gets a 401 whose message echoes the key it got, as a careless endpoint
might.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from tests.models.fake_server import FakeServer, Received, Response, running


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


class FakeOpenAI(FakeServer[Reply]):
    """The server; use :func:`serving` to start and stop it."""

    prefix = "/v1"

    def __init__(self, *, api_key: str | None = "sk-test-key") -> None:
        super().__init__(api_key=api_key)

    def respond(self, request: Received) -> Response | None:
        if request.path != "/v1/chat/completions":
            return Response.json(404, {"error": {"message": f"no route {request.path}"}})
        expected = None if self.api_key is None else f"Bearer {self.api_key}"
        if expected is not None and request.headers.get("authorization") != expected:
            self.record(request)
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {given}"
            return Response.json(
                401, {"error": {"message": message, "type": "invalid_request_error"}}
            )
        reply = self.next_reply(request, Reply(content=f"echo: {request.user_message}"))
        if self.wait(reply.delay_s):
            return None
        if reply.raw is not None:
            return Response(reply.status, reply.raw, "text/plain", reply.headers)
        if reply.status == 200:
            return Response.json(200, _completion(request.body, reply), reply.headers)
        kind = reply.error_type
        error = {"error": {"message": reply.error, "type": kind, "code": reply.status}}
        return Response.json(reply.status, error, reply.headers)


def serving(*, api_key: str | None = "sk-test-key") -> AbstractContextManager[FakeOpenAI]:
    """The server, running while the block runs."""
    return running(FakeOpenAI(api_key=api_key))


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
