"""A model agent for OpenAI-compatible chat-completion endpoints.

:class:`OpenAIChat` sends one ``POST {base_url}/chat/completions`` per call
with httpx's async client, which runs under trio (through anyio). The step
input becomes the user message (text as is; a pydantic model or other
JSON value as JSON), after the optional system prompt. The key rules,
failures and Retry-After are every chat agent's: see :mod:`._chat_agent`.

Output. ``output_type=str`` returns the reply's text. A pydantic model
class asks for JSON matching its schema: as a ``response_format`` JSON
schema (``schema_mode="response_format"``, the default, for endpoints that
support structured outputs) or as instructions with the schema appended
to the system prompt (``schema_mode="instructions"``, for endpoints that
do not). Either way the reply is parsed and validated (a Markdown code
fence around it is tolerated); a reply that does not validate raises
:class:`~trioflow.runtime.AgentOutputInvalid`, which the step counts as a
validation failure: retried, with the message added to the next attempt's
input as feedback.

No system role. Some chat templates (Gemma's) have no system role and drop
a system message without a word, instructions and all. With
``system_role=False`` the system prompt (and the schema instructions) go at
the top of the user message instead.

Usage and cost. Tokens are the ``usage`` the endpoint reports (counted
from the text, about four characters a token, when it reports none);
``prompt_tokens_details.cached_tokens`` are priced as cache reads. The
cost comes from the agent's :class:`~trioflow.runtime.PriceTable`. A model
the table does not price costs ``$0`` where no cost limit applies; under a
cost limit (the run's or the step's) the step refuses it with a
configuration error before the call, never a silent zero against a budget
(price a free model at zero explicitly); see :meth:`OpenAIChat.unpriced`.

Strict budgets. :meth:`OpenAIChat.estimate_usage` gives the governor a
true upper bound to reserve, whatever the endpoint's tokenizer: a
byte-level tokenizer's token covers at least one UTF-8 byte, so the prompt
is at most one token per byte of its text (every message, plus any
``response_format`` or ``options`` the endpoint may turn into prompt),
plus ``template_tokens`` per message and once more for the reply's header
(the chat template's role markers and separators); the reply is at most
``max_tokens``, which an agent under a usage limit therefore needs. An
endpoint that reports more than was reserved is recorded as it reported,
and the governor notes the excess in the trace.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pydantic_core

from .._errors import AgentOutputInvalid, ConfigurationError
from .._usage import Completion
from ._agents import count_tokens
from ._chat_agent import ChatAgent, reported_count, schema_name, utf8_bytes

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FENCED = re.compile(r"\A```[A-Za-z]*\s*\n(?P<body>.*?)\n?\s*```\Z", re.DOTALL)

#: Tokens a chat message costs besides its text (role and separators), when
#: counting a reply whose endpoint reported no usage.
_MESSAGE_OVERHEAD_TOKENS = 4

#: Body fields the prompt bound counts on their own (or that are not prompt).
_COUNTED_FIELDS = frozenset({"model", "messages", "max_tokens", "temperature", "top_p"})


class SchemaMode(enum.StrEnum):
    """How a structured ``output_type`` is asked for."""

    #: ``response_format: {"type": "json_schema", ...}``: the endpoint constrains the reply.
    RESPONSE_FORMAT = "response_format"
    #: The schema is appended to the system prompt as instructions.
    INSTRUCTIONS = "instructions"


def _schema_mode(value: SchemaMode | str) -> SchemaMode:
    try:
        return SchemaMode(value)
    except ValueError:
        raise ConfigurationError(
            f"OpenAIChat: schema_mode must be 'response_format' or 'instructions', got {value!r}"
        ) from None


@attrs.frozen(eq=False)
class OpenAIChat(ChatAgent):
    """An agent calling an OpenAI-compatible chat-completion endpoint.

    See the module docstring for output and usage, and :class:`ChatAgent`
    for what every chat agent checks when it is built. ``options`` holds
    any other body fields the endpoint accepts (``seed``, ``stop``,
    ``presence_penalty``...).
    """

    DEFAULT_BASE_URL: ClassVar[str] = DEFAULT_BASE_URL
    KEY_VARIABLE: ClassVar[str] = "OPENAI_API_KEY"
    OFFICIAL_HOST: ClassVar[str] = "api.openai.com"

    schema_mode: SchemaMode = attrs.field(
        default=SchemaMode.RESPONSE_FORMAT, converter=_schema_mode
    )
    #: False for a chat template without a system role: the system prompt goes in the user turn.
    system_role: bool = True

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not isinstance(self.system_role, bool):
            raise ConfigurationError(
                f"{self._where}: system_role must be True or False, got {self.system_role!r}"
            )

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _fingerprint_fields(self) -> list[Any]:
        return [self.schema_mode.value, self.system_role]

    # What is sent.

    def messages(self, data: Any) -> list[dict[str, str]]:
        """The chat messages a call with ``data`` sends."""
        system = self.system_prompt or ""
        if self._structured and self.schema_mode is SchemaMode.INSTRUCTIONS:
            schema = json.dumps(self.output_type.model_json_schema(), separators=(",", ":"))
            instructions = (
                "Reply with one JSON object that matches this JSON schema, and nothing else "
                f"(no prose, no code fence):\n{schema}"
            )
            system = f"{system}\n\n{instructions}" if system else instructions
        user = self._user_content(data)
        if not self.system_role:
            return [{"role": "user", "content": f"{system}\n\n{user}" if system else user}]
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return messages

    def request_body(self, data: Any) -> dict[str, Any]:
        """The JSON body a call with ``data`` posts."""
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(data)}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self._structured and self.schema_mode is SchemaMode.RESPONSE_FORMAT:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(self.output_type),
                    "schema": self.output_type.model_json_schema(),
                },
            }
        body.update(self.options)
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    # Usage and cost.

    def prompt_token_bound(self, body: Mapping[str, Any]) -> int:
        """The most prompt tokens ``body`` can cost with a byte-level tokenizer.

        One token per UTF-8 byte of every message's text and of every other
        field the endpoint may render into the prompt (``response_format``,
        ``options`` such as tools), plus ``template_tokens`` per message and
        once more for the header of the reply.
        """
        messages = body["messages"]
        tokens = sum(utf8_bytes(message["content"]) for message in messages)
        tokens += self.template_tokens * (len(messages) + 1)
        extra = {key: value for key, value in body.items() if key not in _COUNTED_FIELDS}
        if extra:
            tokens += len(pydantic_core.to_json(extra))
        return tokens

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        tokens = sum(
            count_tokens(message["content"]) + _MESSAGE_OVERHEAD_TOKENS
            for message in body["messages"]
        )
        if "response_format" in body:
            tokens += count_tokens(json.dumps(body["response_format"]))
        return tokens

    # What comes back.

    def parse_reply(self, reply: dict[str, Any], body: dict[str, Any]) -> Completion[Any]:
        content = self._content(reply)
        reported = reply.get("usage")
        # An endpoint that reports no usage: count the text instead.
        input_tokens = self._prompt_tokens(body)
        output_tokens = count_tokens(content)
        cached = 0
        if isinstance(reported, dict):
            input_tokens = reported_count(reported.get("prompt_tokens"), input_tokens)
            output_tokens = reported_count(reported.get("completion_tokens"), output_tokens)
            details = reported.get("prompt_tokens_details")
            if isinstance(details, dict):
                cached = min(reported_count(details.get("cached_tokens"), 0), input_tokens)
        usage = self._usage(input_tokens, output_tokens, cache_read_tokens=cached)
        if not self._structured:
            return Completion(content, usage)
        text = content.strip()
        fenced = _FENCED.match(text)
        if fenced is not None:
            text = fenced.group("body").strip()
        return Completion(self._validated_output(text, usage), usage)

    def _content(self, reply: dict[str, Any]) -> str:
        choices = reply.get("choices")
        message = None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
        if not isinstance(message, dict):
            raise self._malformed("the reply is not a chat completion (no choices[0].message)")
        content = message.get("content")
        if isinstance(content, str):
            return content
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise AgentOutputInvalid(f"model {self.model!r} refused: {self._redact(refusal)}")
        raise AgentOutputInvalid(f"the reply of model {self.model!r} has no content")
