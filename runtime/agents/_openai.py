"""A model agent for OpenAI-compatible chat-completion endpoints.

:class:`OpenAIChat` sends one ``POST {base_url}/chat/completions`` per call
with httpx's async client, which runs under trio (through anyio). The step
input becomes the user message (text as is; a pydantic model or other
JSON value as JSON), after the optional system prompt.

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

Usage and cost. Tokens are the ``usage`` the endpoint reports (counted
from the text, about four characters a token, when it reports none); the
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

Failures map to the runtime's classes, each message naming the model and
the status. Retried (:class:`~trioflow.runtime.ModelCallFailed`): 408,
409, 429 and 5xx replies, connection failures, and no complete reply
within ``timeout_s`` (:class:`~trioflow.runtime.ModelTimeout`). Never
retried (:class:`~trioflow.runtime.ModelRequestRejected`, a configuration
error): every other 4xx, such as 400 (the request is invalid), 401 and 403
(the key is wrong or lacks access) and 404 (unknown model).

Retry-After: when a retried failure carries ``Retry-After`` (seconds or an
HTTP date) or ``retry-after-ms``, the agent itself sleeps that long (at
most ``max_retry_after_s``) and then raises, so the step's next attempt
starts no earlier than the endpoint asked, whatever the retry policy's own
backoff. The wait is part of the call, so it counts against the step's
``timeout_s``; on a step's last attempt it is waited out all the same.

The API key comes from ``api_key=``, or from the environment when the
agent is built: ``OPENAI_API_KEY`` only for the official endpoint
(``https://api.openai.com``), so a key meant for OpenAI never travels to
another host (a local server named by ``base_url``); another host gets a
key from ``api_key=`` or a variable named explicitly with
``api_key_env=``. A missing key is an error, unless
``requires_key=False`` (an endpoint that needs none). The key is sent only in the
``Authorization`` header: it is not in the agent's repr or fingerprint,
and it is cut out of every error message before the message is shortened
(an endpoint may echo it, raw or escaped: see :mod:`._redaction`), so it
never reaches the journal or the trace.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import hashlib
import json
import os
import re
import types
from collections.abc import Mapping
from typing import Any

import attrs
import httpx
import pydantic
import pydantic_core
import trio

from .._errors import (
    AgentOutputInvalid,
    ConfigurationError,
    ModelCallFailed,
    ModelRequestRejected,
    ModelTimeout,
)
from .._usage import Completion, Usage
from ._agents import count_tokens
from ._prices import DEFAULT_PRICES, PriceTable
from ._redaction import redact_secret, redacted_prefix

DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: The variable holding the key for the official endpoint, and only for it.
OPENAI_KEY_VARIABLE = "OPENAI_API_KEY"

#: The official endpoint's host: the only one ``OPENAI_API_KEY`` is sent to by default.
_OFFICIAL_HOST = "api.openai.com"

#: How much of an endpoint's error message a failure keeps (after the key is cut out).
_ERROR_DETAIL_CHARS = 300

#: Statuses worth another attempt: timeout, conflict, rate limit (5xx too).
_RETRYABLE_STATUSES = frozenset({408, 409, 429})

#: Body fields the agent sets itself; ``options`` may not replace them (``max_tokens``
#: bounds what a strict budget reserves).
_RESERVED_OPTIONS = frozenset({"model", "messages", "max_tokens"})

_FENCED = re.compile(r"\A```[A-Za-z]*\s*\n(?P<body>.*?)\n?\s*```\Z", re.DOTALL)

#: Tokens a chat message costs besides its text (role and separators), when
#: counting a reply whose endpoint reported no usage.
_MESSAGE_OVERHEAD_TOKENS = 4

#: Default bound on the tokens a chat template adds per message (role markers,
#: separators, a beginning-of-text token), for strict budgets.
DEFAULT_TEMPLATE_TOKENS = 32


class SchemaMode(enum.StrEnum):
    """How a structured ``output_type`` is asked for."""

    #: ``response_format: {"type": "json_schema", ...}``: the endpoint constrains the reply.
    RESPONSE_FORMAT = "response_format"
    #: The schema is appended to the system prompt as instructions.
    INSTRUCTIONS = "instructions"


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _schema_mode(value: SchemaMode | str) -> SchemaMode:
    try:
        return SchemaMode(value)
    except ValueError:
        raise ConfigurationError(
            f"OpenAIChat: schema_mode must be 'response_format' or 'instructions', got {value!r}"
        ) from None


@attrs.frozen(eq=False)
class OpenAIChat:
    """An agent calling an OpenAI-compatible chat-completion endpoint.

    See the module docstring for output, usage, failures and the key.
    Everything is checked when the agent is built: a ``base_url`` that is
    not an http(s) URL, a missing key (unless ``requires_key=False``, for
    local endpoints that need none), an ``output_type`` that is neither
    ``str`` nor a pydantic model class, and out-of-range options raise
    :class:`~trioflow.runtime.ConfigurationError`.

    ``options`` holds any other body fields the endpoint accepts (``seed``,
    ``stop``, ``presence_penalty``...). ``http_client`` lets calls share an
    open ``httpx.AsyncClient`` (and its connections); you open and close
    it. Without one each call opens its own.
    """

    model: str
    system_prompt: str | None = None
    output_type: type[Any] = str
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = attrs.field(default=None, repr=False)
    api_key_env: str | None = None
    requires_key: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = 1024
    template_tokens: int = DEFAULT_TEMPLATE_TOKENS
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    timeout_s: float = 60.0
    prices: PriceTable = DEFAULT_PRICES
    schema_mode: SchemaMode = attrs.field(
        default=SchemaMode.RESPONSE_FORMAT, converter=_schema_mode
    )
    max_retry_after_s: float = 60.0
    http_client: httpx.AsyncClient | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        where = f"OpenAIChat({self.model!r})"
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(
                f"OpenAIChat: model must be a non-empty name, got {self.model!r}"
            )
        object.__setattr__(self, "base_url", _checked_url(self.base_url, where=where))
        if not _is_output_type(self.output_type):
            raise ConfigurationError(
                f"{where}: output_type must be str or a pydantic model class, "
                f"got {self.output_type!r}"
            )
        object.__setattr__(self, "api_key", self._resolved_key(where))
        if self.max_tokens is not None:
            _check_count(self.max_tokens, "max_tokens", 1, where=where)
        _check_count(self.template_tokens, "template_tokens", 0, where=where)
        temperature = self.temperature
        if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
            raise ConfigurationError(
                f"{where}: temperature must be between 0 and 2, got {temperature!r}"
            )
        top_p = self.top_p
        if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
            raise ConfigurationError(f"{where}: top_p must be in (0, 1], got {top_p!r}")
        if not _is_number(self.timeout_s) or not self.timeout_s > 0:
            raise ConfigurationError(f"{where}: timeout_s must be > 0, got {self.timeout_s!r}")
        if not _is_number(self.max_retry_after_s) or not self.max_retry_after_s >= 0:
            raise ConfigurationError(
                f"{where}: max_retry_after_s must be >= 0, got {self.max_retry_after_s!r}"
            )
        if not isinstance(self.prices, PriceTable):
            raise ConfigurationError(f"{where}: prices must be a PriceTable, got {self.prices!r}")
        reserved = sorted(_RESERVED_OPTIONS & set(self.options))
        if reserved:
            raise ConfigurationError(
                f"{where}: options may not set {', '.join(reserved)} (the agent sets them)"
            )
        try:
            pydantic_core.to_json(dict(self.options))
        except pydantic_core.PydanticSerializationError as error:
            raise ConfigurationError(f"{where}: options must be JSON values: {error}") from None

    def _resolved_key(self, where: str) -> str | None:
        if self.api_key is not None:
            if not isinstance(self.api_key, str) or not self.api_key.strip():
                raise ConfigurationError(f"{where}: api_key must be a non-empty string")
            return self.api_key
        variable = self.api_key_env
        if variable is not None and (not isinstance(variable, str) or not variable):
            raise ConfigurationError(f"{where}: api_key_env must name a variable, got {variable!r}")
        if variable is None and _is_official(self.base_url):
            variable = OPENAI_KEY_VARIABLE
        key = os.environ.get(variable, "").strip() if variable is not None else ""
        if key or not self.requires_key:
            return key or None
        if variable is not None:
            raise ConfigurationError(
                f"{where}: no API key for {self.base_url}: pass api_key=... or set ${variable} "
                "(requires_key=False for an endpoint that needs none)"
            )
        raise ConfigurationError(
            f"{where}: no API key for {self.base_url}: ${OPENAI_KEY_VARIABLE} is sent only to "
            f"https://{_OFFICIAL_HOST}; pass api_key=... or name the variable holding this "
            "host's key with api_key_env=... (requires_key=False for an endpoint that needs none)"
        )

    @property
    def endpoint(self) -> str:
        """The URL every call posts to."""
        return f"{self.base_url}/chat/completions"

    @property
    def fingerprint(self) -> str:
        """Identifies what the agent asks for (never the key), for cache keys."""
        described = json.dumps(
            [
                self.model,
                self.base_url,
                _type_label(self.output_type),
                self.schema_mode.value,
                self.system_prompt,
                self.temperature,
                self.top_p,
                self.max_tokens,
                pydantic_core.to_json(dict(self.options)).decode(),
            ]
        )
        return f"OpenAIChat({self.model!r})#{hashlib.sha256(described.encode()).hexdigest()[:16]}"

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
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": self._user_content(data)})
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
                    "name": _schema_name(self.output_type),
                    "schema": self.output_type.model_json_schema(),
                },
            }
        body.update(self.options)
        return body

    @property
    def _structured(self) -> bool:
        return self.output_type is not str

    def _user_content(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, pydantic.BaseModel):
            return data.model_dump_json()
        try:
            return pydantic_core.to_json(data).decode()
        except pydantic_core.PydanticSerializationError as error:
            raise ConfigurationError(
                f"OpenAIChat({self.model!r}) sends its input as text or JSON; "
                f"{type(data).__name__} is neither: {error}"
            ) from None

    # Usage and cost.

    def unpriced(self) -> str | None:
        """Why this agent's cost cannot be counted against a cost limit (None: it can).

        The step asks before every call under a cost limit, with or without
        an estimate: a model the price table does not know is refused then,
        before anything is spent, never counted as a silent ``$0``.
        """
        if self.model in self.prices:
            return None
        return (
            f"model {self.model!r} has no price in the agent's price table, so its cost "
            "cannot be counted against a usage limit: add it with "
            f"prices=DEFAULT_PRICES.with_prices({{{self.model!r}: (input, output)}}) "
            "in dollars per million tokens (0 for a free model)"
        )

    def estimate_usage(self, data: Any) -> Usage:
        """A true upper bound for the governor (see the module docstring, "Strict budgets").

        Asked only when a usage limit applies. Without ``max_tokens`` the
        reply is unbounded, so this is a configuration error. A model the
        price table does not know gets no cost here: the step refuses it
        first wherever a cost limit applies (see :meth:`unpriced`).
        """
        if self.max_tokens is None:
            raise ConfigurationError(
                f"OpenAIChat({self.model!r}) has max_tokens=None, so its reply has no upper "
                "bound to reserve under a usage limit: set max_tokens=..."
            )
        input_tokens = self.prompt_token_bound(self.request_body(data))
        cost = self.prices.cost(self.model, input_tokens, self.max_tokens)
        return Usage(cost if cost is not None else 0, input_tokens, self.max_tokens)

    def prompt_token_bound(self, body: Mapping[str, Any]) -> int:
        """The most prompt tokens ``body`` can cost with a byte-level tokenizer.

        One token per UTF-8 byte of every message's text and of every other
        field the endpoint may render into the prompt (``response_format``,
        ``options`` such as tools), plus ``template_tokens`` per message and
        once more for the header of the reply.
        """
        messages = body["messages"]
        tokens = sum(_utf8_bytes(message["content"]) for message in messages)
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

    def _usage(self, reply: dict[str, Any], body: dict[str, Any], content: str) -> Usage:
        reported = reply.get("usage")
        # An endpoint that reports no usage: count the text instead.
        input_tokens = self._prompt_tokens(body)
        output_tokens = count_tokens(content)
        if isinstance(reported, dict):
            input_tokens = _count(reported.get("prompt_tokens"), input_tokens)
            output_tokens = _count(reported.get("completion_tokens"), output_tokens)
        cost = self.prices.cost(self.model, input_tokens, output_tokens)
        return Usage(cost if cost is not None else 0, input_tokens, output_tokens)

    # The call.

    async def run(self, data: Any, *, context: Any, resources: Any) -> Completion[Any]:
        body = self.request_body(data)
        response = await self._post(body)
        if not response.is_success:
            await self._fail(response)
        reply = self._reply_json(response)
        content = self._content(reply)
        usage = self._usage(reply, body, content)
        return Completion(self._output(content, usage), usage)

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout_s)
        try:
            with trio.move_on_after(self.timeout_s):
                if self.http_client is not None:
                    return await self.http_client.post(
                        self.endpoint, json=body, headers=headers, timeout=timeout
                    )
                async with httpx.AsyncClient(timeout=timeout) as client:
                    return await client.post(self.endpoint, json=body, headers=headers)
        except httpx.TimeoutException:
            pass
        except httpx.RequestError as error:
            detail = self._redact(f"{type(error).__name__}: {error}")
            raise ModelCallFailed(
                f"model {self.model!r}: cannot reach {self.endpoint} ({detail})", model=self.model
            ) from None
        raise ModelTimeout(
            f"model {self.model!r} at {self.endpoint}: no reply within {self.timeout_s:g}s",
            model=self.model,
        )

    async def _fail(self, response: httpx.Response) -> None:
        status = response.status_code
        described = (
            f"model {self.model!r} at {self.endpoint}: HTTP {status} "
            f"{response.reason_phrase or httpx.codes.get_reason_phrase(status)}"
        )
        # The key is cut out first, then the message shortened: a key across the cut
        # would leave a piece of itself behind.
        detail = redacted_prefix(_error_detail(response), self.api_key, _ERROR_DETAIL_CHARS)
        if detail:
            described = f"{described}: {detail}"
        if status in _RETRYABLE_STATUSES or status >= 500:
            wait = _retry_after(response.headers)
            if wait is not None:
                wait = min(wait, self.max_retry_after_s)
                described = f"{described} (waited {wait:g}s as Retry-After asked)"
                await trio.sleep(wait)
            raise ModelCallFailed(described, model=self.model, status=status, retry_after_s=wait)
        raise ModelRequestRejected(described, model=self.model, status=status)

    def _reply_json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise ModelCallFailed(
                f"model {self.model!r} at {self.endpoint}: HTTP {response.status_code} "
                "with a body that is not a JSON object",
                model=self.model,
                status=response.status_code,
            )
        return reply

    def _content(self, reply: dict[str, Any]) -> str:
        choices = reply.get("choices")
        message = None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
        if not isinstance(message, dict):
            raise ModelCallFailed(
                f"model {self.model!r} at {self.endpoint}: the reply is not a chat completion "
                "(no choices[0].message)",
                model=self.model,
                status=200,
            )
        content = message.get("content")
        if isinstance(content, str):
            return content
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise AgentOutputInvalid(f"model {self.model!r} refused: {self._redact(refusal)}")
        raise AgentOutputInvalid(f"the reply of model {self.model!r} has no content")

    def _output(self, content: str, usage: Usage) -> Any:
        if not self._structured:
            return content
        text = content.strip()
        fenced = _FENCED.match(text)
        if fenced is not None:
            text = fenced.group("body").strip()
        try:
            return self.output_type.model_validate_json(text)
        except pydantic.ValidationError as error:
            raise AgentOutputInvalid(
                f"the reply of model {self.model!r} is not a valid "
                f"{self.output_type.__name__}: {_problems(error)}",
                usage=usage,
            ) from None

    def _redact(self, text: str) -> str:
        """``text`` with the API key cut out, raw or escaped (an endpoint may echo it back)."""
        if self.api_key is None:
            return text
        return redact_secret(text, self.api_key)


#: Body fields the prompt bound counts on their own (or that are not prompt).
_COUNTED_FIELDS = frozenset({"model", "messages", "max_tokens", "temperature", "top_p"})


def _utf8_bytes(text: str) -> int:
    # (A lone surrogate, which JSON can carry escaped, counts as its three bytes.)
    return len(text.encode("utf-8", "surrogatepass"))


def _is_official(base_url: str) -> bool:
    """Whether ``base_url`` is OpenAI's own endpoint, the only home of ``OPENAI_API_KEY``."""
    url = httpx.URL(base_url)
    return url.scheme == "https" and url.host == _OFFICIAL_HOST and url.port in (None, 443)


def _check_count(value: object, name: str, least: int, *, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{where}: {name} must be an int, got {value!r}")
    if value < least:
        raise ConfigurationError(f"{where}: {name} must be >= {least}, got {value}")


def _checked_url(url: object, *, where: str) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"{where}: base_url must be a string, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ConfigurationError(f"{where}: base_url {url!r} is not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"{where}: base_url {url!r} is not an http(s) URL with a host "
            "(such as https://api.openai.com/v1)"
        )
    if parsed.query or parsed.fragment:
        raise ConfigurationError(f"{where}: base_url {url!r} may not have a query or fragment")
    return url.rstrip("/")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _is_output_type(value: object) -> bool:
    if value is str:
        return True
    return isinstance(value, type) and issubclass(value, pydantic.BaseModel)


def _type_label(value: type[Any]) -> str:
    return f"{value.__module__}.{value.__qualname__}"


def _schema_name(model: type[pydantic.BaseModel]) -> str:
    """The schema's name as OpenAI accepts it: ``[A-Za-z0-9_-]``, at most 64."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "output"


def _count(value: object, otherwise: int) -> int:
    """A token count the endpoint reported, or ``otherwise`` when it is missing or bad."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return otherwise


def _problems(error: pydantic.ValidationError, *, most: int = 5) -> str:
    details = error.errors(include_url=False)
    shown = [
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        if problem["loc"]
        else problem["msg"]
        for problem in details[:most]
    ]
    if len(details) > most:
        shown.append(f"and {len(details) - most} more")
    return "; ".join(shown)


def _error_detail(response: httpx.Response) -> str:
    """The endpoint's own error message, when it sent one (whole: the caller redacts, then cuts)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return response.text.strip()


def _retry_after(headers: httpx.Headers) -> float | None:
    """The wait ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` asks for."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
