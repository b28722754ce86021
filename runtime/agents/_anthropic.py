"""A model agent speaking the Anthropic Messages API natively.

:class:`AnthropicChat` sends one ``POST {base_url}/v1/messages`` per call
with httpx (the key in ``x-api-key``, the API version in
``anthropic-version``). The step input becomes the user turn (text as is,
anything else as JSON), the system prompt the top-level ``system`` field.
The key rules (``ANTHROPIC_API_KEY`` only for ``https://api.anthropic.com``),
failures and Retry-After are every chat agent's: see :mod:`._chat_agent`;
an overloaded API (HTTP 529) is a 5xx, so it is retried.

Output. ``output_type=str`` returns the reply's text blocks, joined. A
pydantic model class is asked for through a forced tool: the request
offers one tool whose ``input_schema`` is the model's JSON schema and
names it in ``tool_choice`` (``{"type": "tool", ...}``), so the reply is a
``tool_use`` block whose ``input`` is validated with pydantic. A reply that
does not validate, does not call the tool, or is a refusal raises
:class:`~trioflow.runtime.AgentOutputInvalid` (a validation failure,
retried with the problem as feedback), carrying what the reply cost.

Prompt caching. ``cache_prompt=True`` marks the system prompt (and the
output tool before it) as a cache breakpoint (``cache_control``
ephemeral, the 5-minute cache), so calls that share it read it from the
cache.

Usage and cost. The reply's ``usage`` splits the prompt into
``input_tokens`` (not cached), ``cache_creation_input_tokens`` (written to
the cache) and ``cache_read_input_tokens`` (read from it). trioflow's
:class:`~trioflow.runtime.Usage` has one input count, so it records the
whole prompt, the three summed, and the cost prices each part at its own
price (:meth:`~trioflow.runtime.agents.PriceTable.cost`: cache writes and
reads at the model's cache prices).

Strict budgets. :meth:`AnthropicChat.estimate_usage` reserves a true upper
bound: one token per UTF-8 byte of the system prompt, the user turn and
every other field the API renders into the prompt (the output tool's
schema, ``options``), plus ``template_tokens`` per turn and once more for
the reply's header; the reply is at most ``max_tokens`` (which the API
requires). The cost bound prices every prompt token at the dearest of the
input and cache prices, since the API decides what it caches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pydantic_core

from .._errors import AgentOutputInvalid, ConfigurationError
from .._usage import Completion, Usage
from ._agents import count_tokens
from ._chat_agent import ChatAgent, reported_count, schema_name, utf8_bytes

#: The API version every request names (the Messages API's stable version).
DEFAULT_API_VERSION = "2023-06-01"

#: What the forced output tool tells the model.
_OUTPUT_TOOL_DESCRIPTION = "Give your answer as this tool's input."

#: Body fields the prompt bound counts on their own (or that are not prompt).
_COUNTED_FIELDS = frozenset({"model", "messages", "max_tokens", "temperature", "top_p", "system"})


@attrs.frozen(eq=False)
class AnthropicChat(ChatAgent):
    """An agent calling the Anthropic Messages API (see the module docstring).

    ``max_tokens`` is required (the API needs it; default 1024), and
    ``temperature`` is between 0 and 1. ``options`` holds any other body
    fields the API accepts (``stop_sequences``, ``top_k``, ``metadata``...);
    the agent sets ``system``, ``tools`` and ``tool_choice`` itself.
    """

    DEFAULT_BASE_URL: ClassVar[str] = "https://api.anthropic.com"
    KEY_VARIABLE: ClassVar[str] = "ANTHROPIC_API_KEY"
    OFFICIAL_HOST: ClassVar[str] = "api.anthropic.com"
    MAX_TEMPERATURE: ClassVar[float] = 1.0
    RESERVED_OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"model", "messages", "max_tokens", "system", "tools", "tool_choice"}
    )

    api_version: str = DEFAULT_API_VERSION
    #: Mark the system prompt as a cache breakpoint (the 5-minute prompt cache).
    cache_prompt: bool = False

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.max_tokens is None:
            raise ConfigurationError(
                f"{self._where}: max_tokens is required by the Messages API, got None"
            )
        if not isinstance(self.api_version, str) or not self.api_version:
            raise ConfigurationError(
                f"{self._where}: api_version must be a version such as {DEFAULT_API_VERSION!r}"
            )
        if self.cache_prompt and not self.system_prompt:
            raise ConfigurationError(
                f"{self._where}: cache_prompt=True caches the system prompt, and there is none"
            )

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _fingerprint_fields(self) -> list[Any]:
        return [self.api_version, self.cache_prompt]

    # What is sent.

    def request_body(self, data: Any) -> dict[str, Any]:
        """The JSON body a call with ``data`` posts."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": self._user_content(data)}],
        }
        if self.system_prompt:
            body["system"] = self._system(self.system_prompt)
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self._structured:
            body["tools"] = [self.output_tool()]
            body["tool_choice"] = {"type": "tool", "name": self.output_tool_name}
        body.update(self.options)
        return body

    def _system(self, prompt: str) -> str | list[dict[str, Any]]:
        if not self.cache_prompt:
            return prompt
        return [{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]

    @property
    def output_tool_name(self) -> str:
        """The name of the tool a structured reply calls."""
        return schema_name(self.output_type)

    def output_tool(self) -> dict[str, Any]:
        """The tool whose input is the structured output."""
        return {
            "name": self.output_tool_name,
            "description": _OUTPUT_TOOL_DESCRIPTION,
            "input_schema": self.output_type.model_json_schema(),
        }

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "anthropic-version": self.api_version}
        if self.api_key is not None:
            headers["x-api-key"] = self.api_key
        return headers

    # Usage and cost.

    def prompt_token_bound(self, body: Mapping[str, Any]) -> int:
        """The most prompt tokens ``body`` can cost with a byte-level tokenizer.

        One token per UTF-8 byte of the system prompt, of every turn's text
        and of every other field the API may render into the prompt (tools,
        ``options``), plus ``template_tokens`` per turn (the system prompt
        one of them) and once more for the header of the reply.
        """
        messages = body["messages"]
        tokens = sum(utf8_bytes(message["content"]) for message in messages)
        turns = len(messages) + 1
        if "system" in body:
            tokens += utf8_bytes(_system_text(body["system"]))
            turns += 1
        tokens += self.template_tokens * turns
        extra = {key: value for key, value in body.items() if key not in _COUNTED_FIELDS}
        if extra:
            tokens += len(pydantic_core.to_json(extra))
        return tokens

    # What comes back.

    def parse_reply(self, reply: dict[str, Any], body: dict[str, Any]) -> Completion[Any]:
        blocks = reply.get("content")
        if not isinstance(blocks, list):
            raise self._malformed("the reply is not a message (no content list)")
        usage = self._reply_usage(reply, body, blocks)
        if reply.get("stop_reason") == "refusal":
            text = self._redact(_text(blocks))
            raise AgentOutputInvalid(f"model {self.model!r} refused: {text}", usage=usage)
        if not self._structured:
            if not any(_is_block(block, "text") for block in blocks):
                raise AgentOutputInvalid(
                    f"the reply of model {self.model!r} has no text", usage=usage
                )
            return Completion(_text(blocks), usage)
        for block in blocks:
            if _is_block(block, "tool_use") and block.get("name") == self.output_tool_name:
                return Completion(self._validated_output(block.get("input"), usage), usage)
        raise AgentOutputInvalid(
            f"the reply of model {self.model!r} did not call its output tool "
            f"{self.output_tool_name!r}",
            usage=usage,
        )

    def _reply_usage(self, reply: dict[str, Any], body: dict[str, Any], blocks: list[Any]) -> Usage:
        reported = reply.get("usage")
        if not isinstance(reported, dict):
            # An endpoint that reports no usage: count the text instead.
            prompt = count_tokens(json.dumps(body["messages"]) + _system_text(body.get("system")))
            return self._usage(prompt, count_tokens(json.dumps(blocks)))
        written = reported_count(reported.get("cache_creation_input_tokens"), 0)
        read = reported_count(reported.get("cache_read_input_tokens"), 0)
        uncached = reported_count(reported.get("input_tokens"), 0)
        output_tokens = reported_count(reported.get("output_tokens"), 0)
        return self._usage(
            uncached + written + read,
            output_tokens,
            cache_read_tokens=read,
            cache_write_tokens=written,
        )


def _is_block(block: object, kind: str) -> bool:
    return isinstance(block, dict) and block.get("type") == kind


def _text(blocks: list[Any]) -> str:
    return "".join(str(block.get("text", "")) for block in blocks if _is_block(block, "text"))


def _system_text(system: object) -> str:
    """The system prompt's text, given as a string or as text blocks."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(str(block.get("text", "")) for block in system if isinstance(block, dict))
    return ""
