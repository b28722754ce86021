"""The step-path grammar (one module builds and parses paths) and ``children()``, the one walk."""

from __future__ import annotations

from typing import Any

import pytest
from trioflow.runtime import ConfigurationError, Pipeline, Step, step
from trioflow.runtime._dsl._nesting import nesting_depth
from trioflow.runtime._paths import (
    CallKey,
    Segment,
    SegmentKind,
    attempt_path,
    child,
    fallback_path,
    idempotency_key,
    is_step_path,
    is_within,
    item_segment,
    iteration_segment,
    last_segment,
    ledger_key,
    locate,
    parent_of,
    parse_ledger_key,
    parse_segment,
    segment_matches,
    step_segment,
)
from trioflow.runtime.agents import FakeModel


@step
async def draft(text: Any) -> Any:
    return text


@step
async def review(text: Any) -> Any:
    return text


async def echo(text: Any) -> Any:
    return text


def test_builders_write_each_form() -> None:
    path = child(child("main", step_segment(2, "refine")), iteration_segment(3))
    assert child(path, step_segment(0, "draft")) == "main/2:refine/loop[3]/0:draft"
    assert item_segment(7) == "item[7]"
    assert (iteration_segment(None), item_segment(None)) == ("loop[*]", "item[*]")
    assert fallback_path("main/0:s", "backup") == "main/0:s/fallback:backup"
    assert attempt_path("main/0:s", 2) == "main/0:s#2"
    assert attempt_path("main/0:s", "1-3") == "main/0:s#1-3"
    assert ledger_key("main/0:s", 2, 1) == "main/0:s#2#1"
    assert idempotency_key("run-1", "main/0:s#2#1") == "run-1/main/0:s#2#1"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("0:draft", Segment(SegmentKind.STEP, "0:draft", 0, "draft")),
        ("12:a:b", Segment(SegmentKind.STEP, "12:a:b", 12, "a:b")),
        ("loop[3]", Segment(SegmentKind.ITERATION, "loop[3]", 3)),
        ("loop[*]", Segment(SegmentKind.ITERATION, "loop[*]")),
        ("item[0]", Segment(SegmentKind.ITEM, "item[0]", 0)),
        ("fallback:backup", Segment(SegmentKind.FALLBACK, "fallback:backup", name="backup")),
        ("fast", Segment(SegmentKind.BRANCH, "fast", name="fast")),
        ("loop[x]", Segment(SegmentKind.BRANCH, "loop[x]", name="loop[x]")),
        ("a:b", Segment(SegmentKind.BRANCH, "a:b", name="a:b")),
    ],
)
def test_a_segment_is_told_by_its_form(text: str, parsed: Segment) -> None:
    assert parse_segment(text) == parsed


def test_paths_are_read_back() -> None:
    assert parent_of("main/1:p/fast") == "main/1:p"
    assert last_segment("main/1:p/fast") == "fast"
    assert (parent_of("main"), last_segment("main")) == ("", "main")
    assert [is_step_path(p) for p in ("main/0:a", "main/0:a/fast", "main", "m/item[2]")] == [
        True,
        False,
        False,
        False,
    ]
    assert [is_within(p, "main/0:a") for p in ("main/0:a", "main/0:a/x", "main/0:ab")] == [
        True,
        True,
        False,
    ]


def test_a_ledger_key_is_read_back_into_its_parts() -> None:
    # A name may hold '#': the attempt and call are the last two parts.
    assert parse_ledger_key("main/0:s#3#2") == CallKey("main/0:s", 3, 2)
    assert parse_ledger_key("main/0:a#b#1#4") == CallKey("main/0:a#b", 1, 4)
    assert parse_ledger_key(ledger_key("main/1:x/fallback:y", 2, 1)) == CallKey(
        "main/1:x/fallback:y", 2, 1
    )
    assert [parse_ledger_key(k) for k in ("main/0:s", "main/0:s#1", "#1#1", "p#a#1")] == [
        None,
        None,
        None,
        None,
    ]


def test_a_body_segment_matches_every_iteration_or_item() -> None:
    assert [segment_matches("loop[*]", t) for t in ("loop[4]", "loop[*]", "item[4]", "x")] == [
        True,
        True,
        False,
        False,
    ]
    assert segment_matches("item[*]", "item[0]") is True
    assert segment_matches("0:a", "0:a") is True
    assert segment_matches("0:a", "1:a") is False


def every_kind() -> Pipeline:
    backup = Step.from_callable(echo, name="backup")
    primary = Step.from_callable(echo, name="primary", fallback=backup)
    chooser = Step.from_callable(
        FakeModel("pick", respond=lambda _: ["a"]).run, name="pick", output_type=list[str]
    )
    return (
        Pipeline.of(primary, name="main")
        >> Step.parallel("par", {"one": draft, "two": draft >> review})
        >> Step.loop_until("loop", review, lambda out, ctx: True)
        >> Step.map_over("map", review)
        >> Step.branch_on("cond", lambda data, ctx: "x", {"x": draft}, default=review)
        >> Step.router("route", chooser, {"a": draft})
        >> (draft >> review).as_step("nested")
        >> Step.human_in_the_loop("ask", "ok?")
    )


def walk(node: Step | Pipeline, path: str) -> list[tuple[str, str]]:
    found = [(path, type(node).__name__)]
    for segment, spec in node.children():
        found.extend(walk(spec, child(path, segment)))
    return found


def test_children_name_every_path_the_runtime_gives() -> None:
    assert walk(every_kind(), "main") == [
        ("main", "Pipeline"),
        ("main/0:primary", "AgentStep"),
        ("main/0:primary/fallback:backup", "AgentStep"),
        ("main/1:par", "ParallelStep"),
        ("main/1:par/one", "AgentStep"),
        ("main/1:par/two", "Pipeline"),
        ("main/1:par/two/0:draft", "AgentStep"),
        ("main/1:par/two/1:review", "AgentStep"),
        ("main/2:loop", "LoopStep"),
        ("main/2:loop/loop[*]", "AgentStep"),
        ("main/3:map", "MapStep"),
        ("main/3:map/item[*]", "AgentStep"),
        ("main/4:cond", "ConditionalStep"),
        ("main/4:cond/x", "AgentStep"),
        ("main/4:cond/default", "AgentStep"),
        ("main/5:route", "RouterStep"),
        ("main/5:route/pick", "AgentStep"),
        ("main/5:route/a", "AgentStep"),
        ("main/6:nested", "PipelineStep"),
        ("main/6:nested/0:draft", "AgentStep"),
        ("main/6:nested/1:review", "AgentStep"),
        ("main/7:ask", "HumanStep"),
    ]
    assert nesting_depth(every_kind()) == 3


def test_locate_follows_children_down_a_path() -> None:
    pipeline = every_kind()
    assert locate(pipeline, "main/2:loop/loop[9]", root="main").name == "review"
    assert locate(pipeline, "main/0:primary/fallback:backup", root="main").name == "backup"
    assert locate(pipeline, "main/1:par/two/1:review", root="main").name == "review"
    with pytest.raises(ConfigurationError, match=r"^path 'main/1:par/two' names a pipeline"):
        locate(pipeline, "main/1:par/two", root="main")
    with pytest.raises(ConfigurationError, match=r"^path 'main/2:loop/item\[1\]': no step 'item"):
        locate(pipeline, "main/2:loop/item[1]", root="main")


def test_replace_child_rebuilds_one_child_and_keeps_the_rest() -> None:
    pipeline = every_kind()
    [_, (_, par), *_] = [(s, spec) for s, spec in pipeline.children()]
    assert isinstance(par, Step)
    replaced: Any = par.replace_child("one", review)
    assert [(s, spec.name) for s, spec in replaced.children()] == [
        ("one", "review"),
        ("two", "pipeline"),
    ]
    assert [(s, spec.name) for s, spec in par.children()] == [("one", "draft"), ("two", "pipeline")]
    with pytest.raises(KeyError):
        par.replace_child("three", review)
