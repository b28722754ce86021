"""Fixtures of the model-agent tests: the fake endpoints (runtime and store: the plugin's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.models.fake_anthropic import FakeAnthropic
from tests.models.fake_anthropic import serving as serving_anthropic
from tests.models.fake_openai import FakeOpenAI, serving

KEY = "sk-test-key"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with serving(api_key=KEY) as fake:
        yield fake


ANTHROPIC_KEY = "sk-ant-test-key"


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with serving_anthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake
