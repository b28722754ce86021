"""Every example runs, and does what its docstring says it shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.models.fake_openai import Reply, serving

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without any model endpoint settings, plus ``variables``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_BASE_URL_KEY", "OPENAI_MODEL")
    }
    return {**kept, **variables}


def test_every_example_is_tested() -> None:
    # Each is run here or in tests/test_gallery.py.
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == [
        "batch_map.py",
        "budgeted_research.py",
        "crash_resume.py",
        "draft_critique_revise.py",
        "human_approval.py",
        "real_model.py",
        "refine_loop.py",
        "research_fanout.py",
        "router.py",
    ]


def test_draft_critique_revise_as_a_script() -> None:
    done = _run(str(EXAMPLES / "draft_critique_revise.py"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "main/0:draft                 attempts=1 cost=$0.000318, 26 tokens",
        "main/1:keep_draft            attempts=1 cost=$0.00, 0 tokens",
        "main/2:critique              attempts=1 cost=$0.000165, 27 tokens",
        "main/3:revision_prompt       attempts=1 cost=$0.00, 0 tokens",
        "main/4:revise                attempts=2 cost=$0.001107, 153 tokens",
        "main/5:polish                attempts=3 cost=$0.000588, 64 tokens",
    ]
    assert lines[6] == (
        "output: A short essay on structured concurrency: it matters because tasks end "
        "together. In conclusion, structure beats callbacks. [polished]"
    )
    assert lines[7] == "notes: ['Too short; add a conclusion.']"
    total = Decimal("0.000318") + Decimal("0.000165") + Decimal("0.001107") + Decimal("0.000588")
    assert lines[8] == f"total: ${total}, 270 tokens"


def test_budgeted_research_stops_before_the_call_that_could_go_over() -> None:
    done = _run(str(EXAMPLES / "budgeted_research.py"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "stopped: Cost limit of $0.015 would be exceeded: step 'main/3:write_report' needs "
        "up to $0.0057, 124 tokens with $0.011415 committed and $0.00 reserved"
    )
    assert [line.split()[0] for line in lines[1:5]] == [
        "main/0:plan",
        "main/1:search",
        "main/2:summarize",
        "main/3:write_report",
    ]
    assert lines[4].split(maxsplit=1)[1] == "$0.00, 0 tokens"
    assert lines[5] == "  total spent: $0.011415, 217 tokens (budget $0.015)"


SYSTEM_PROMPT = (
    "You review technologies for a team's tech radar. Give a verdict (adopt, trial or "
    "hold), two or three strengths and two or three risks, each under twelve words."
)

REVIEW_LINES = [
    "verdict: trial",
    "  + structured concurrency ties task lifetimes to scopes",
    "  + errors propagate, none are lost",
    "  - the team must learn nurseries",
    "  - some libraries assume asyncio",
    "radar: TRIAL: 2 strengths, 2 risks",
]


def test_real_model_offline_says_it_used_fake_model() -> None:
    done = _run(str(EXAMPLES / "real_model.py"), env=_environment())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "using FakeModel (offline: set OPENAI_API_KEY or OPENAI_BASE_URL for a real model)",
        "review: attempts=1 cost=$0.000738, 54 tokens",
        *REVIEW_LINES,
        "total: $0.000738, 54 tokens (budget $0.05)",
    ]


def test_real_model_calls_the_endpoint_it_is_given() -> None:
    valid = json.dumps(
        {
            "verdict": "trial",
            "strengths": [
                "structured concurrency ties task lifetimes to scopes",
                "errors propagate, none are lost",
            ],
            "risks": ["the team must learn nurseries", "some libraries assume asyncio"],
        }
    )
    with serving(api_key="sk-example") as fake:
        fake.script(Reply(valid, prompt_tokens=210, completion_tokens=60))
        done = _run(
            str(EXAMPLES / "real_model.py"),
            env=_environment(OPENAI_BASE_URL_KEY="sk-example", OPENAI_BASE_URL=fake.base_url),
        )
    assert done.returncode == 0, done.stderr
    # gpt-4o-mini: $0.15 in, $0.60 out per million tokens.
    cost = (210 * Decimal("0.15") + 60 * Decimal("0.60")) / 1_000_000
    assert done.stdout.splitlines() == [
        f"using OpenAIChat: model gpt-4o-mini at {fake.base_url}",
        f"review: attempts=1 cost=${cost}, 270 tokens",
        *REVIEW_LINES,
        f"total: ${cost}, 270 tokens (budget $0.05)",
    ]
    [request] = fake.requests
    assert request.headers["authorization"] == "Bearer sk-example"
    assert request.user_message == "structured concurrency"
    assert request.system_message == SYSTEM_PROMPT
    assert request.body["response_format"]["json_schema"]["name"] == "Review"
    assert request.body["temperature"] == 0
    assert request.body["max_tokens"] == 400


@pytest.mark.parametrize("openai_key", [{}, {"OPENAI_API_KEY": "sk-meant-for-openai"}])
def test_real_model_on_a_local_endpoint_without_a_key(openai_key: dict[str, str]) -> None:
    # OPENAI_API_KEY, when set, is not sent to the local endpoint.
    with serving(api_key=None) as fake:
        fake.script(Reply('{"verdict": "hold", "strengths": ["a"], "risks": ["b", "c"]}'))
        done = _run(
            str(EXAMPLES / "real_model.py"),
            "trio",
            env=_environment(OPENAI_BASE_URL=fake.base_url, OPENAI_MODEL="llama3.2", **openai_key),
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"using OpenAIChat: model llama3.2 at {fake.base_url}",
        "review: attempts=1 cost=$0.00, 15 tokens",
        "verdict: hold",
        "  + a",
        "  - b",
        "  - c",
        "radar: HOLD: 1 strengths, 2 risks",
        "total: $0.00, 15 tokens (budget $0.05)",
    ]
    [request] = fake.requests
    assert "authorization" not in request.headers
    assert request.body["model"] == "llama3.2"


@pytest.mark.parametrize(
    ("target", "input_text", "extra", "code"),
    [
        ("draft_critique_revise.py:pipeline", "structured concurrency", [], 0),
        ("budgeted_research.py:pipeline", "trio nurseries", ["--max-cost", "0.015"], 3),
        ("real_model.py:pipeline", "structured concurrency", ["--max-cost", "0.05"], 0),
    ],
)
def test_examples_through_the_command_line(
    target: str, input_text: str, extra: list[str], code: int
) -> None:
    done = _run(
        "-m",
        "trioflow.runtime",
        "run",
        str(EXAMPLES / target),
        "--input",
        input_text,
        *extra,
        env=_environment(),
    )
    assert done.returncode == code, done.stderr
