"""Fixtures of the model-agent tests: the fake endpoints, and a runtime over a fresh store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Runtime, open_runtime

from tests.models.fake_anthropic import FakeAnthropic
from tests.models.fake_anthropic import serving as serving_anthropic
from tests.models.fake_openai import FakeOpenAI, serving

KEY = "sk-test-key"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with serving(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
async def rt(store: InMemoryStore) -> AsyncIterator[Runtime]:
    async with open_runtime(store=store) as runtime:
        yield runtime


ANTHROPIC_KEY = "sk-ant-test-key"


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with serving_anthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake
