"""What every HTTP model agent shares: the key rules, checks, failures and the round trip.

:class:`ChatAgent` is the base of :class:`~trioflow.runtime.agents.OpenAIChat`
and :class:`~trioflow.runtime.agents.AnthropicChat`. A provider's agent
says how a call's request is built (:meth:`ChatAgent.request_body`,
:meth:`ChatAgent.headers`) and how a reply is read
(:meth:`ChatAgent.parse_reply`); what lies between, one round trip
(:meth:`ChatAgent.call`), is the same for every provider, and so is what
is checked when the agent is built.

The key. ``api_key=``, or a variable read when the agent is built: the
provider's own variable (``KEY_VARIABLE``) only for its official endpoint
(``https`` on ``OFFICIAL_HOST``), so a key meant for the provider never
travels to another host; another host gets a key only from ``api_key=`` or
a variable named with ``api_key_env=``. A missing key is an error unless
``requires_key=False``. The key is not in the agent's repr or fingerprint,
and it is cut out of every error message before the message is shortened
(an endpoint may echo it, raw or escaped: see :mod:`._redaction`).

Failures. Retried (:class:`~trioflow.runtime.ModelCallFailed`): 408, 409,
429 and 5xx replies (an overloaded 529 among them), connection failures,
and no complete reply within ``timeout_s``
(:class:`~trioflow.runtime.ModelTimeout`). Never retried
(:class:`~trioflow.runtime.ModelRequestRejected`, a configuration error):
every other 4xx, and a 5xx whose error says the request itself is wrong
(an ``invalid_request_error``, or a parameter the server does not support:
llama.cpp's server answers an unsupported ``response_format`` with HTTP
500, and no number of attempts would change that).

Retry-After: a retried failure carrying ``Retry-After`` (seconds or an
HTTP date) or ``retry-after-ms`` makes the agent sleep that long (at most
``max_retry_after_s``) before it raises, so the step's next attempt starts
no earlier than the endpoint asked. The wait counts against the step's
``timeout_s``.
"""

from __future__ import annotations

import abc
import datetime
import email.utils
import hashlib
import json
import os
import re
import types
from collections.abc import Mapping
from typing import Any, ClassVar

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
from ._prices import DEFAULT_PRICES, PriceTable
from ._redaction import redact_secret, redacted_prefix

#: How much of an endpoint's error message a failure keeps (after the key is cut out).
_ERROR_DETAIL_CHARS = 300

#: Statuses worth another attempt: timeout, conflict, rate limit (5xx too).
_RETRYABLE_STATUSES = frozenset({408, 409, 429})

#: A 5xx error saying so is about the request, not the server's state: never retried.
_REQUEST_ERROR_KIND = "invalid_request_error"
_UNSUPPORTED = re.compile(
    r"unsupported|not supported|unknown (?:parameter|field|argument)"
    r"|unrecogni[sz]ed (?:request )?(?:argument|parameter|field)|must be one of",
    re.IGNORECASE,
)

#: Default bound on the tokens a chat template adds per message (role markers,
#: separators, a beginning-of-text token), for strict budgets.
DEFAULT_TEMPLATE_TOKENS = 32


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _default_base_url(agent: ChatAgent) -> str:
    return agent.DEFAULT_BASE_URL


@attrs.frozen(eq=False)
class ChatAgent(abc.ABC):
    """An agent calling a provider's chat endpoint over httpx (see the module docstring).

    Everything is checked when the agent is built: a ``base_url`` that is
    not an http(s) URL, a missing key, an ``output_type`` that is neither
    ``str`` nor a pydantic model class, and out-of-range options raise
    :class:`~trioflow.runtime.ConfigurationError`. ``http_client`` lets
    calls share an open ``httpx.AsyncClient`` (you open and close it);
    without one each call opens its own.
    """

    #: The provider's endpoint, when ``base_url`` is not given.
    DEFAULT_BASE_URL: ClassVar[str]
    #: The environment variable holding the key for the official endpoint only.
    KEY_VARIABLE: ClassVar[str]
    #: The official endpoint's host.
    OFFICIAL_HOST: ClassVar[str]
    #: The highest temperature the provider accepts.
    MAX_TEMPERATURE: ClassVar[float] = 2.0
    #: Body fields the agent sets itself, which ``options`` may not replace.
    RESERVED_OPTIONS: ClassVar[frozenset[str]] = frozenset({"model", "messages", "max_tokens"})

    model: str
    system_prompt: str | None = None
    output_type: type[Any] = str
    base_url: str = attrs.field(default=attrs.Factory(_default_base_url, takes_self=True))
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
    max_retry_after_s: float = 60.0
    http_client: httpx.AsyncClient | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(f"{name}: model must be a non-empty name, got {self.model!r}")
        where = self._where
        object.__setattr__(self, "base_url", _checked_url(self.base_url, where=where))
        if not _is_output_type(self.output_type):
            raise ConfigurationError(
                f"{where}: output_type must be str or a pydantic model class, "
                f"got {self.output_type!r}"
            )
        object.__setattr__(self, "api_key", self._resolved_key())
        if self.max_tokens is not None:
            _check_count(self.max_tokens, "max_tokens", 1, where=where)
        _check_count(self.template_tokens, "template_tokens", 0, where=where)
        self._check_sampling()
        if not _is_number(self.timeout_s) or not self.timeout_s > 0:
            raise ConfigurationError(f"{where}: timeout_s must be > 0, got {self.timeout_s!r}")
        if not _is_number(self.max_retry_after_s) or not self.max_retry_after_s >= 0:
            raise ConfigurationError(
                f"{where}: max_retry_after_s must be >= 0, got {self.max_retry_after_s!r}"
            )
        if not isinstance(self.prices, PriceTable):
            raise ConfigurationError(f"{where}: prices must be a PriceTable, got {self.prices!r}")
        self._check_options()

    @property
    def _where(self) -> str:
        return f"{type(self).__name__}({self.model!r})"

    def _check_sampling(self) -> None:
        temperature, most = self.temperature, self.MAX_TEMPERATURE
        if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= most):
            raise ConfigurationError(
                f"{self._where}: temperature must be between 0 and {most:g}, got {temperature!r}"
            )
        top_p = self.top_p
        if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
            raise ConfigurationError(f"{self._where}: top_p must be in (0, 1], got {top_p!r}")

    def _check_options(self) -> None:
        reserved = sorted(self.RESERVED_OPTIONS & set(self.options))
        if reserved:
            raise ConfigurationError(
                f"{self._where}: options may not set {', '.join(reserved)} (the agent sets them)"
            )
        try:
            pydantic_core.to_json(dict(self.options))
        except pydantic_core.PydanticSerializationError as error:
            raise ConfigurationError(
                f"{self._where}: options must be JSON values: {error}"
            ) from None

    def _resolved_key(self) -> str | None:
        where = self._where
        if self.api_key is not None:
            if not isinstance(self.api_key, str) or not self.api_key.strip():
                raise ConfigurationError(f"{where}: api_key must be a non-empty string")
            return self.api_key
        variable = self.api_key_env
        if variable is not None and (not isinstance(variable, str) or not variable):
            raise ConfigurationError(f"{where}: api_key_env must name a variable, got {variable!r}")
        if variable is None and self._is_official:
            variable = self.KEY_VARIABLE
        key = os.environ.get(variable, "").strip() if variable is not None else ""
        if key or not self.requires_key:
            return key or None
        if variable is not None:
            raise ConfigurationError(
                f"{where}: no API key for {self.base_url}: pass api_key=... or set ${variable} "
                "(requires_key=False for an endpoint that needs none)"
            )
        raise ConfigurationError(
            f"{where}: no API key for {self.base_url}: ${self.KEY_VARIABLE} is sent only to "
            f"https://{self.OFFICIAL_HOST}; pass api_key=... or name the variable holding this "
            "host's key with api_key_env=... (requires_key=False for an endpoint that needs none)"
        )

    @property
    def _is_official(self) -> bool:
        """Whether ``base_url`` is the provider's own endpoint, the only home of its variable."""
        url = httpx.URL(self.base_url)
        return url.scheme == "https" and url.host == self.OFFICIAL_HOST and url.port in (None, 443)

    @property
    def fingerprint(self) -> str:
        """Identifies what the agent asks for (never the key), for cache keys."""
        described = json.dumps(
            [
                self.model,
                self.base_url,
                _type_label(self.output_type),
                *self._fingerprint_fields(),
                self.system_prompt,
                self.temperature,
                self.top_p,
                self.max_tokens,
                pydantic_core.to_json(dict(self.options)).decode(),
            ]
        )
        return f"{self._where}#{hashlib.sha256(described.encode()).hexdigest()[:16]}"

    # What a provider's agent says.

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """The URL every call posts to."""

    @abc.abstractmethod
    def _fingerprint_fields(self) -> list[Any]:
        """The provider's own settings that change what a call asks for."""

    @abc.abstractmethod
    def request_body(self, data: Any) -> dict[str, Any]:
        """The JSON body a call with ``data`` posts."""

    @abc.abstractmethod
    def headers(self) -> dict[str, str]:
        """The headers of every call (the key among them)."""

    @abc.abstractmethod
    def prompt_token_bound(self, body: Mapping[str, Any]) -> int:
        """The most prompt tokens ``body`` can cost with a byte-level tokenizer."""

    @abc.abstractmethod
    def parse_reply(self, reply: dict[str, Any], body: dict[str, Any]) -> Completion[Any]:
        """The output and usage of a successful reply to ``body``."""

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
        """A true upper bound for the governor, asked only when a usage limit applies.

        The prompt is at most :meth:`prompt_token_bound` tokens and the
        reply at most ``max_tokens`` (without it the reply is unbounded: a
        configuration error); the cost is the most those tokens can cost,
        however much of the prompt the provider's cache reads or writes. A
        model the price table does not know gets no cost here: the step
        refuses it first wherever a cost limit applies (see :meth:`unpriced`).
        """
        if self.max_tokens is None:
            raise ConfigurationError(
                f"{self._where} has max_tokens=None, so its reply has no upper "
                "bound to reserve under a usage limit: set max_tokens=..."
            )
        input_tokens = self.prompt_token_bound(self.request_body(data))
        cost = self.prices.cost_bound(self.model, input_tokens, self.max_tokens)
        return Usage(cost if cost is not None else 0, input_tokens, self.max_tokens)

    def _usage(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Usage:
        """What a call cost: ``input_tokens`` is the whole prompt, cached parts included."""
        cost = self.prices.cost(
            self.model,
            input_tokens,
            output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
        )
        return Usage(cost if cost is not None else 0, input_tokens, output_tokens)

    # The call.

    async def run(self, data: Any, *, context: Any, resources: Any) -> Completion[Any]:
        body = self.request_body(data)
        return self.parse_reply(await self.call(body), body)

    async def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """One round trip: post ``body``, map a failure, return the reply's JSON object."""
        response = await self._post(body)
        if not response.is_success:
            await self._fail(response)
        return self._reply_json(response)

    def _user_content(self, data: Any) -> str:
        """The step input as the user turn's text: text as is, anything else as JSON."""
        if isinstance(data, str):
            return data
        if isinstance(data, pydantic.BaseModel):
            return data.model_dump_json()
        try:
            return pydantic_core.to_json(data).decode()
        except pydantic_core.PydanticSerializationError as error:
            raise ConfigurationError(
                f"{self._where} sends its input as text or JSON; "
                f"{type(data).__name__} is neither: {error}"
            ) from None

    @property
    def _structured(self) -> bool:
        """Whether the output is a pydantic model (else text)."""
        return self.output_type is not str

    def _validated_output(self, value: object, usage: Usage) -> Any:
        """``value`` (JSON text, or an object) as ``output_type``, or a validation failure."""
        try:
            if isinstance(value, str):
                return self.output_type.model_validate_json(value)
            return self.output_type.model_validate(value)
        except pydantic.ValidationError as error:
            raise AgentOutputInvalid(
                f"the reply of model {self.model!r} is not a valid "
                f"{self.output_type.__name__}: {_problems(error)}",
                usage=usage,
            ) from None

    def _malformed(self, what: str) -> ModelCallFailed:
        """A successful status with a body that is not the reply it should be."""
        return ModelCallFailed(
            f"model {self.model!r} at {self.endpoint}: {what}", model=self.model, status=200
        )

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = self.headers()
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
        reason = response.reason_phrase or httpx.codes.get_reason_phrase(status)
        # (A status without a standard name, such as Anthropic's 529, may come with none.)
        described = f"model {self.model!r} at {self.endpoint}: HTTP {status} {reason}".rstrip()
        kind, message = _error_detail(response)
        # The key is cut out first, then the message shortened: a key across the cut
        # would leave a piece of itself behind.
        detail = redacted_prefix(message, self.api_key, _ERROR_DETAIL_CHARS)
        if detail:
            described = f"{described}: {detail}"
        if status >= 500 and (kind == _REQUEST_ERROR_KIND or _UNSUPPORTED.search(message)):
            described = f"{described} (the request asks for what the server does not support)"
            raise ModelRequestRejected(described, model=self.model, status=status)
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

    def _redact(self, text: str) -> str:
        """``text`` with the API key cut out, raw or escaped (an endpoint may echo it back)."""
        if self.api_key is None:
            return text
        return redact_secret(text, self.api_key)


def utf8_bytes(text: str) -> int:
    """The most tokens ``text`` can be for a byte-level tokenizer: its UTF-8 bytes."""
    # (A lone surrogate, which JSON can carry escaped, counts as its three bytes.)
    return len(text.encode("utf-8", "surrogatepass"))


def reported_count(value: object, otherwise: int) -> int:
    """A token count the endpoint reported, or ``otherwise`` when it is missing or bad."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return otherwise


def schema_name(model: type[pydantic.BaseModel]) -> str:
    """The schema's name as providers accept it: ``[A-Za-z0-9_-]``, at most 64."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "output"


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


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """The kind and message of the endpoint's error (whole: the caller redacts, then cuts).

    OpenAI and Anthropic both send ``{"error": {"type": ..., "message": ...}}``.
    """
    try:
        body = response.json()
    except ValueError:
        return "", response.text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type")
            return (kind if isinstance(kind, str) else ""), str(error["message"])
        if isinstance(error, str):
            return "", error
    return "", response.text.strip()


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
