"""The API key reaches the endpoint and nothing else: not the journal, the trace or a repr."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from pathlib import Path

import pytest
from cli_in_process import trioflow
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from trioflow.persistence import InMemoryStore, RunStore
from trioflow.runtime import AgentStep, ConfigurationError, RetryPolicy, RunStatus, open_runtime
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime.agents import OpenAIChat

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
        ok = await rt.run(AgentStep("ask", agent, retry=retry), "hello")
        echoed = await rt.run(AgentStep("ask", agent, retry=retry), "hello")
        refused = await rt.run(AgentStep("ask", wrong, retry=retry), "hello")
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


async def test_the_key_never_reaches_a_log_record_or_a_span(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setenv("TRIOFLOW_OTEL", "1")
    caplog.set_level(logging.DEBUG, logger="trioflow")
    with serving(api_key=SECRET) as fake:
        fake.script(
            Reply("hi"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
            Reply(status=500, error=f"upstream rejected key {SECRET}"),
        )
        await _run_everything(InMemoryStore(), fake.base_url)

    logs = "\n".join(f"{record.getMessage()} {record.__dict__!r}" for record in caplog.records)
    spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    assert "retry: attempt 1 agent_error" in logs  # the records are there, without the key
    assert "Internal Server Error" in logs
    assert "Internal Server Error" in spans
    for text in (logs, spans):
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
    assert "SECRET" not in repr(AgentStep("ask", agent))


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
            result = await rt.run(AgentStep("ask", agent), "hello")

    assert agent.api_key is None
    assert result.output == "echo: hello"
    assert "authorization" not in fake.requests[0].headers


# --- Redacted before it is cut, in every form an endpoint may echo it ---------------------------

LONG_KEY = "sk-proj-SECRET0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0"


def _no_piece_of(key: str, text: str) -> list[str]:
    """The pieces of ``key``, six characters or more, that ``text`` holds (none, it must be)."""
    return [key[i : i + 6] for i in range(len(key) - 5) if key[i : i + 6] in text]


async def _failure_of(fake_url: str, key: str) -> str:
    agent = OpenAIChat("gpt-4o-mini", base_url=fake_url, api_key=key)
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(AgentStep("ask", agent), "hello")
    assert result.status is RunStatus.FAILED
    assert result.error is not None  # narrows Optional; the exact text is checked by callers
    prefix = (
        "step 'main/0:ask' failed (configuration): model 'gpt-4o-mini' at "
        f"{fake_url}/chat/completions: HTTP 400 Bad Request: "
    )
    assert result.error.startswith(prefix)
    return result.error.removeprefix(prefix)


@pytest.mark.parametrize("starts_at", [0, 1, 250, 290, 291, 295, 299, 300, 301, 340])
@pytest.mark.parametrize("as_json", [True, False], ids=["json-message", "text-body"])
async def test_an_echoed_key_is_cut_out_before_the_message_is_shortened(
    starts_at: int, as_json: bool
) -> None:
    echoed = "x" * starts_at + LONG_KEY + " was rejected"
    reply = Reply(status=400, error=echoed) if as_json else Reply(status=400, raw=echoed.encode())
    with serving(api_key=None) as fake:
        fake.script(reply)
        detail = await _failure_of(fake.base_url, LONG_KEY)

    redacted = "x" * starts_at + "[api key] was rejected"
    expected = redacted if len(redacted) <= 300 else redacted[:300] + "..."
    assert detail == expected
    assert _no_piece_of(LONG_KEY, detail) == []


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ESCAPED_FORMS = {
    # A JSON encoder that escapes every character (the body is not read as JSON: raw text).
    "json-escapes": ("".join(f"\\u{ord(c):04x}" for c in SECRET), "[api key]"),
    "json-escapes-upper-mixed": (
        "".join(f"\\u{ord(c):04X}" if i % 2 else c for i, c in enumerate(SECRET)),
        "[api key]",
    ),
    "url-encoded": ("".join(f"%{byte:02X}" for byte in SECRET.encode()), "[api key]"),
    "url-in-query": (
        f"https://x.example/?key={urllib.parse.quote(SECRET)}",
        "https://x.example/?key=[api key]",
    ),
    "html-entities": ("".join(f"&#{ord(c)};" for c in SECRET), "[api key]"),
    # The Authorization header dumped as base64, and HTTP Basic credentials: at most one
    # character of the encoded run mixes a key byte with the bytes around it.
    "base64-bearer": (_base64(f"Bearer {SECRET}"), "QmVhcmVyIH[api key]g=="),
    "base64-basic": (_base64(f"user:{SECRET}"), "dXNlcjp[api key]I="),
    "base64-alone": (_base64(SECRET), "[api key]"),
    # A server that cut its own echo short, or kept only the key's end.
    "cut-short": (SECRET[:14], "[api key]"),
    "end-only": (SECRET[-10:], "[api key]"),
}


@pytest.mark.parametrize("form", sorted(ESCAPED_FORMS))
async def test_an_echoed_key_is_cut_out_in_its_escaped_forms(form: str) -> None:
    echoed, redacted = ESCAPED_FORMS[form]
    with serving(api_key=None) as fake:
        fake.script(Reply(status=400, raw=f"bad key: {echoed}.".encode()))
        detail = await _failure_of(fake.base_url, SECRET)

    assert detail == f"bad key: {redacted}."
    assert "SECRET" not in detail


async def test_a_body_full_of_escaped_keys_leaves_no_piece_in_the_kept_message() -> None:
    # Each echo is 3 characters per key character; redacted, 9 characters: however far
    # the redaction must look to fill the kept 300 characters, no echo is left half-cut.
    percent = "".join(f"%{byte:02X}" for byte in LONG_KEY.encode())
    with serving(api_key=None) as fake:
        fake.script(Reply(status=400, raw=" ".join([percent] * 200).encode()))
        detail = await _failure_of(fake.base_url, LONG_KEY)

    assert detail == " ".join(["[api key]"] * 200)[:300] + "..."


# --- The environment's key goes only to OpenAI ----------------------------------------------------


async def test_the_environment_key_is_not_sent_to_another_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with serving(api_key=None) as fake:
        with pytest.raises(ConfigurationError) as caught:
            OpenAIChat("gpt-4o-mini", base_url=fake.base_url)
        optional = OpenAIChat("gpt-4o-mini", base_url=fake.base_url, requires_key=False)
        async with open_runtime(store=InMemoryStore()) as rt:
            result = await rt.run(AgentStep("ask", optional), "hello")

    assert str(caught.value) == (
        f"OpenAIChat('gpt-4o-mini'): no API key for {fake.base_url}: $OPENAI_API_KEY is sent "
        "only to https://api.openai.com; pass api_key=... or name the variable holding this "
        "host's key with api_key_env=... (requires_key=False for an endpoint that needs none)"
    )
    assert optional.api_key is None
    assert result.output == "echo: hello"
    [request] = fake.requests
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.openai.com/v1",  # not over TLS
        "https://api.openai.com:8443/v1",
        "https://api.openai.com.example.net/v1",
        "https://eu.api.openai.com.example/v1",
        "http://127.0.0.1:8080/v1",
    ],
)
def test_only_the_official_endpoint_reads_the_environment_key(
    monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    assert OpenAIChat("gpt-4o-mini", base_url=base_url, requires_key=False).api_key is None
    assert OpenAIChat("gpt-4o-mini", base_url="https://api.openai.com/v1").api_key == SECRET
    assert OpenAIChat("gpt-4o-mini", base_url="https://API.openai.com:443/v1/").api_key == SECRET


async def test_a_variable_named_explicitly_is_sent_to_any_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with serving(api_key=SECRET) as fake:
        agent = OpenAIChat("gpt-4o-mini", base_url=fake.base_url, api_key_env="OPENAI_API_KEY")
        async with open_runtime(store=InMemoryStore()) as rt:
            result = await rt.run(AgentStep("ask", agent), "hello")

    assert result.output == "echo: hello"
    assert [r.headers["authorization"] for r in fake.requests] == [f"Bearer {SECRET}"]


# --- Never in what the CLI prints, its journal, its trace or the Perfetto export -----------------

CLI_PIPELINE = """
import os
from trioflow.runtime import AgentStep
from trioflow.runtime.agents import OpenAIChat

agent = OpenAIChat("gpt-4o-mini", base_url=os.environ["FAKE_BASE_URL"], api_key_env="HOUSE_KEY")
pipeline = AgentStep("ask", agent)
"""


def test_the_cli_never_shows_or_stores_an_echoed_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(CLI_PIPELINE)
    db = tmp_path / "runs.db"
    monkeypatch.setenv("HOUSE_KEY", LONG_KEY)
    echoed = "x" * 295 + LONG_KEY  # across the 300 characters an error message keeps
    with serving(api_key=None) as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        fake.script(Reply(status=400, error=echoed))
        code = trioflow("run", f"{pipeline}:pipeline", "--input", "hi", "--db", str(db), "--json")
    printed = capsys.readouterr()
    run_id = json.loads(printed.out)["run_id"]
    assert code == ExitCode.PIPELINE_FAILED
    perfetto = tmp_path / "trace.json"
    assert trioflow("trace", run_id, "--db", str(db), "--json") == ExitCode.OK
    assert trioflow("trace", run_id, "--db", str(db), "--perfetto", str(perfetto)) == ExitCode.OK
    assert trioflow("runs", "show", run_id, "--db", str(db)) == ExitCode.OK
    shown = capsys.readouterr()

    everything = "\n".join([printed.out, printed.err, shown.out, shown.err, perfetto.read_text()])
    assert "x" * 295 + "[api ..." in everything  # the message is there, cut, without the key
    assert _no_piece_of(LONG_KEY, everything) == []
    assert _no_piece_of(LONG_KEY, _files_of(db).decode("latin-1")) == []
