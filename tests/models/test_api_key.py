"""The API key reaches the endpoint and nothing else: not the journal, the trace or a repr."""

from __future__ import annotations

from pathlib import Path

import pytest
from trioflow.persistence import InMemoryStore, RunStore
from trioflow.runtime import (
    ConfigurationError,
    OpenAIChat,
    RetryPolicy,
    RunStatus,
    Step,
    open_runtime,
)

from tests.models.fake_openai import Reply, serving

SECRET = "sk-proj-SECRET-4f8a1c9e77d2"


async def _journal_text(store: RunStore, run_ids: list[str]) -> str:
    """Everything the store holds about the runs, as text."""
    parts: list[str] = []
    for run_id in run_ids:
        parts.append(repr(await store.get_run(run_id)))
        parts.extend(repr(record) for record in await store.steps_of(run_id))
        parts.extend(repr(entry) for entry in await store.ledger_of(run_id))
        parts.extend(repr(event) for event in await store.trace_of(run_id))
    return "\n".join(parts)


async def _run_everything(store: RunStore | Path, base_url: str) -> tuple[list[str], str]:
    """A success, a retried 500 that echoes the key, and a 401 that echoes a wrong key."""
    agent = OpenAIChat("gpt-4o-mini", base_url=base_url, api_key=SECRET)
    wrong = OpenAIChat("gpt-4o-mini", base_url=base_url, api_key=f"{SECRET}-wrong")
    retry = RetryPolicy(max_attempts=2)
    async with open_runtime(store=store) as rt:
        ok = await rt.run(Step("ask", agent, retry=retry), "hello")
        echoed = await rt.run(Step("ask", agent, retry=retry), "hello")
        refused = await rt.run(Step("ask", wrong, retry=retry), "hello")
        text = await _journal_text(rt.store, [ok.run_id, echoed.run_id, refused.run_id])
    assert [ok.status, echoed.status, refused.status] == [
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.FAILED,
    ]
    assert echoed.error == (
        "step 'main/0:ask' failed (agent_error): ModelCallFailed: model 'gpt-4o-mini' at "
        f"{base_url}/chat/completions: HTTP 500 Internal Server Error: "
        "upstream rejected key [api key]"
    )
    assert refused.error == (
        "step 'main/0:ask' failed (configuration): model 'gpt-4o-mini' at "
        f"{base_url}/chat/completions: HTTP 401 Unauthorized: "
        "Incorrect API key provided: [api key]"
    )
    return [ok.run_id, echoed.run_id, refused.run_id], text


async def test_the_key_is_sent_but_never_journaled_or_traced() -> None:
    with serving(api_key=SECRET) as fake:
        fake.script(
            Reply("hi"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
        )
        store = InMemoryStore()
        _, text = await _run_everything(store, fake.base_url)

    assert [r.headers["authorization"] for r in fake.requests] == [
        f"Bearer {SECRET}",
        f"Bearer {SECRET}",
        f"Bearer {SECRET}",
        f"Bearer {SECRET}-wrong",
    ]
    assert "retry" in text  # the trace's retry note is there, without the key
    assert "Internal Server Error" in text
    assert SECRET not in text
    assert "SECRET" not in text


def _files_of(path: Path) -> bytes:
    """The journal's bytes: the database and its write-ahead log, if any."""
    files = sorted(path.parent.glob(f"{path.name}*"))
    assert path in files
    return b"".join(file.read_bytes() for file in files)


async def test_the_sqlite_journal_file_never_holds_the_key(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with serving(api_key=SECRET) as fake:
        fake.script(
            Reply("hi"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
        )
        run_ids, _ = await _run_everything(path, fake.base_url)

    stored = _files_of(path)
    assert all(run_id.encode() in stored for run_id in run_ids)
    assert b"upstream rejected key [api key]" in stored  # the messages are stored as text
    assert b"SECRET" not in stored


def test_the_key_is_not_in_the_repr_or_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    agent = OpenAIChat("gpt-4o-mini")

    assert agent.api_key == SECRET
    assert "SECRET" not in repr(agent)
    assert "SECRET" not in agent.fingerprint
    assert "SECRET" not in repr(Step("ask", agent))


def test_a_key_from_another_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HOUSE_LLM_KEY", SECRET)

    agent = OpenAIChat("house", base_url="http://127.0.0.1:9/v1", api_key_env="HOUSE_LLM_KEY")

    assert agent.api_key == SECRET


def test_a_missing_key_is_an_error_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(ConfigurationError) as caught:
        OpenAIChat("gpt-4o-mini")

    assert str(caught.value) == (
        "OpenAIChat('gpt-4o-mini'): no API key for https://api.openai.com/v1: pass "
        "api_key=... or set $OPENAI_API_KEY (requires_key=False for an endpoint that needs none)"
    )


async def test_an_endpoint_that_needs_no_key_never_gets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # meant for another provider
    with serving(api_key=None) as fake:
        agent = OpenAIChat("local", base_url=fake.base_url, requires_key=False)
        async with open_runtime(store=InMemoryStore()) as rt:
            result = await rt.run(Step("ask", agent), "hello")

    assert agent.api_key is None
    assert result.output == "echo: hello"
    assert "authorization" not in fake.requests[0].headers
