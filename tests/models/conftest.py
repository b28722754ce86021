"""Fixtures of the model-agent tests: the fake endpoint (runtime and store: the plugin's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.models.fake_openai import FakeOpenAI, serving

KEY = "sk-test-key"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with serving(api_key=KEY) as fake:
        yield fake
