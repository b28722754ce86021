"""Bad input to the model agent and the price table fails when they are built, clearly."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from trioflow.runtime import ConfigurationError
from trioflow.runtime.agents import DEFAULT_PRICES, ModelPrice, OpenAIChat, PriceTable, SchemaMode

KEY = "sk-test-key"


class Answer(pydantic.BaseModel):
    title: str


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        (
            "localhost:8000/v1",
            "OpenAIChat('m'): base_url 'localhost:8000/v1' is not an http(s) URL with a host "
            "(such as https://api.openai.com/v1)",
        ),
        (
            "api.openai.com",
            "OpenAIChat('m'): base_url 'api.openai.com' is not an http(s) URL with a host "
            "(such as https://api.openai.com/v1)",
        ),
        (
            "ftp://example.com/v1",
            "OpenAIChat('m'): base_url 'ftp://example.com/v1' is not an http(s) URL with a host "
            "(such as https://api.openai.com/v1)",
        ),
        (
            "http://",
            "OpenAIChat('m'): base_url 'http://' is not an http(s) URL with a host "
            "(such as https://api.openai.com/v1)",
        ),
        (
            "https://example.com/v1?key=1",
            "OpenAIChat('m'): base_url 'https://example.com/v1?key=1' may not have a query "
            "or fragment",
        ),
        (42, "OpenAIChat('m'): base_url must be a string, got 42"),
    ],
)
def test_a_base_url_that_is_not_a_url(base_url: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAIChat("m", base_url=base_url, api_key=KEY)
    assert str(caught.value) == message


def test_a_base_url_loses_its_trailing_slash() -> None:
    agent = OpenAIChat("m", base_url="http://127.0.0.1:8000/v1/", api_key=KEY)
    assert agent.endpoint == "http://127.0.0.1:8000/v1/chat/completions"


@pytest.mark.parametrize("output_type", [int, dict, list[str], "Answer", Answer(title="x")])
def test_an_output_type_that_is_not_a_model_or_str(output_type: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        OpenAIChat("m", api_key=KEY, output_type=output_type)
    assert str(caught.value) == (
        f"OpenAIChat('m'): output_type must be str or a pydantic model class, got {output_type!r}"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": ""}, "OpenAIChat: model must be a non-empty name, got ''"),
        ({"max_tokens": 0}, "OpenAIChat('m'): max_tokens must be >= 1, got 0"),
        ({"max_tokens": 1.5}, "OpenAIChat('m'): max_tokens must be an int, got 1.5"),
        ({"temperature": 3}, "OpenAIChat('m'): temperature must be between 0 and 2, got 3"),
        ({"temperature": "0.2"}, "OpenAIChat('m'): temperature must be between 0 and 2, got '0.2'"),
        ({"top_p": 0}, "OpenAIChat('m'): top_p must be in (0, 1], got 0"),
        ({"timeout_s": 0}, "OpenAIChat('m'): timeout_s must be > 0, got 0"),
        ({"max_retry_after_s": -1}, "OpenAIChat('m'): max_retry_after_s must be >= 0, got -1"),
        (
            {"options": {"messages": [], "model": "x"}},
            "OpenAIChat('m'): options may not set messages, model (the agent sets them)",
        ),
        (
            {"schema_mode": "xml"},
            "OpenAIChat: schema_mode must be 'response_format' or 'instructions', got 'xml'",
        ),
        (
            {"prices": {"m": (1, 2)}},
            "OpenAIChat('m'): prices must be a PriceTable, got {'m': (1, 2)}",
        ),
        ({"api_key": ""}, "OpenAIChat('m'): api_key must be a non-empty string"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"model": "m", "api_key": KEY, **options}
    with pytest.raises(ConfigurationError) as caught:
        OpenAIChat(**arguments)
    assert str(caught.value) == message


def test_schema_mode_accepts_its_values() -> None:
    agent = OpenAIChat("m", api_key=KEY, output_type=Answer, schema_mode="instructions")
    assert agent.schema_mode is SchemaMode.INSTRUCTIONS


def test_price_table_rejects_negative_prices() -> None:
    with pytest.raises(ValueError, match=r"^the price of 'm': a price cannot be negative, got -1$"):
        PriceTable({"m": (-1, 2)})
    with pytest.raises(ValueError, match=r"^a price cannot be negative, got -0.5$"):
        ModelPrice(1, "-0.5")
    with pytest.raises(ValueError, match=r"^the price of 'm': a price cannot be negative"):
        DEFAULT_PRICES.with_prices({"m": (1, -2)})


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (
            {"m": (1,)},
            "the price of 'm' must be ModelPrice(...) or a pair (input, output) per "
            "million tokens, got (1,)",
        ),
        (
            {"m": "1"},
            "the price of 'm' must be ModelPrice(...) or a pair (input, output) per "
            "million tokens, got '1'",
        ),
        ({"m": ("x", 1)}, "the price of 'm': price per million tokens must be a number, got 'x'"),
        ({"m": ("inf", 1)}, "the price of 'm': price per million tokens must be finite, got 'inf'"),
        ({"": (1, 1)}, "a price table's model names must be non-empty strings, got ''"),
    ],
)
def test_price_table_rejects_what_is_not_a_price(prices: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PriceTable(prices)


def test_with_prices_adds_and_replaces_without_changing_the_table() -> None:
    table = DEFAULT_PRICES.with_prices(
        {"house": (0, 0), "gpt-4o": ("2", ModelPrice(1, 1).output_per_mtok)}
    )

    assert table.price_of("house") == ModelPrice(0, 0)
    assert table.price_of("gpt-4o") == ModelPrice(Decimal(2), Decimal(1))
    assert DEFAULT_PRICES.price_of("gpt-4o") == ModelPrice("2.50", "10.00", "1.25")
    assert DEFAULT_PRICES.price_of("house") is None
    assert table.cost("house", 10, 10) == 0
    assert table.cost("unknown", 10, 10) is None
    assert ModelPrice("0.1", 0.2).cost(3_000_000, 1_000_000) == Decimal("0.5")
    assert str(ModelPrice("0.15", "0.6")) == "$0.15 in / $0.60 out per million tokens"


def test_the_readme_example_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [block] = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
        if "judge = OpenAIChat(" in block
    ]
    namespace: dict[str, Any] = {"__name__": "readme_example"}

    exec(compile(block, "README.md", "exec"), namespace)

    judge, local = namespace["judge"], namespace["local"]
    assert (judge.model, judge.api_key, judge.endpoint) == (
        "gpt-4o-mini",
        KEY,
        "https://api.openai.com/v1/chat/completions",
    )
    assert judge.output_type is namespace["Verdict"]
    assert (local.api_key, local.endpoint) == (None, "http://localhost:11434/v1/chat/completions")
    assert local.prices.price_of("llama3.2") == ModelPrice(0, 0)
    assert namespace["review"].output_type is namespace["Verdict"]


def test_the_readme_provider_examples_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-readme")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    wanted = ("judge = OpenAIChat(", "claude = AnthropicChat(", "gemma = OpenAIChat(")
    namespace: dict[str, Any] = {"__name__": "readme_example"}

    for marker in wanted:
        [block] = [block for block in blocks if marker in block]
        exec(compile(block, "README.md", "exec"), namespace)

    claude, gemma = namespace["claude"], namespace["gemma"]
    assert (claude.endpoint, claude.headers()["x-api-key"]) == (
        "https://api.anthropic.com/v1/messages",
        "sk-ant-readme",
    )
    assert claude.request_body("x")["system"] == [
        {"type": "text", "text": "You review designs.", "cache_control": {"type": "ephemeral"}}
    ]
    assert claude.model == "claude-sonnet-4-5"
    assert claude.model in claude.prices
    schema = json.dumps(namespace["Verdict"].model_json_schema(), separators=(",", ":"))
    assert gemma.messages("Is it sound?") == [
        {
            "role": "user",
            "content": "Reply with one JSON object that matches this JSON schema, and nothing "
            f"else (no prose, no code fence):\n{schema}\n\nIs it sound?",
        }
    ]
    assert gemma.api_key is None
