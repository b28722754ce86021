"""Model agents: what an agent step calls, and what model tokens cost.

An agent is any object with ``async def run(data, *, context, resources)``
(see :class:`Agent`); :class:`OpenAIChat` speaks to OpenAI-compatible
endpoints and :class:`AnthropicChat` to the Anthropic Messages API;
:class:`FakeModel` and :class:`StubAgent` stand in for a model in tests
and offline examples. The errors a model call ends with live here
too: the step's retry policy classifies them.
"""

from .._errors import ModelCallFailed, ModelRequestRejected, ModelTimeout, ScriptExhausted
from ._agents import Agent, CallableAgent, FakeModel, StubAgent
from ._anthropic import AnthropicChat
from ._openai import OpenAIChat, SchemaMode
from ._prices import DEFAULT_PRICES, ModelPrice, PriceTable, PriceTier

__all__ = [
    "DEFAULT_PRICES",
    "Agent",
    "AnthropicChat",
    "CallableAgent",
    "FakeModel",
    "ModelCallFailed",
    "ModelPrice",
    "ModelRequestRejected",
    "ModelTimeout",
    "OpenAIChat",
    "PriceTable",
    "PriceTier",
    "SchemaMode",
    "ScriptExhausted",
    "StubAgent",
]
