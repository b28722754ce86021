"""``trioflow graph`` and ``Pipeline.to_mermaid()``: a pipeline's structure, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from cli_in_process import trioflow
from trioflow.runtime import AgentStep, Pipeline, Step
from trioflow.runtime.agents import StubAgent

from tests.graph.every_kind import EVERY_KIND, EVERY_KIND_MERMAID, tidy

EXAMPLES = Path(__file__).parents[2] / "examples"
EXPECTED = Path(__file__).parent / "expected"
NAMES = sorted(path.stem for path in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("form", "suffix"), [("mermaid", "mmd"), ("dot", "dot")])
def test_each_example_is_drawn_exactly(
    name: str, form: str, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = trioflow("graph", EXAMPLES / f"{name}.py:pipeline", "--format", form)
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == (EXPECTED / f"{name}.{suffix}").read_text()


def test_every_kind_of_step_is_drawn_with_the_types_between_steps() -> None:
    assert EVERY_KIND.to_mermaid() == EVERY_KIND_MERMAID


def test_dot_draws_the_same_graph() -> None:
    drawn = (
        tidy >> AgentStep("ask", StubAgent(["x"]), fallback=AgentStep("b", StubAgent(["y"])))
    ).to_dot()
    assert drawn == (
        'digraph "pipeline" {\n'
        "    rankdir=TB;\n"
        '    input [label="input", shape=oval];\n'
        '    n1 [label="tidy", shape=box];\n'
        '    n2 [label="ask", shape=box];\n'
        '    n3 [label="b", shape=box];\n'
        '    output [label="output", shape=oval];\n'
        '    input -> n1 [label="str"];\n'
        '    n1 -> n2 [label="str"];\n'
        '    n2 -> n3 [label="fallback", style=dashed];\n'
        '    n2 -> output [label="Any"];\n'
        "}\n"
    )


def test_the_command_and_to_mermaid_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("graph", f"{Path(__file__).parent / 'every_kind.py'}:EVERY_KIND") == 0
    assert capsys.readouterr().out == EVERY_KIND_MERMAID


def test_a_missing_pipeline_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("graph", EXAMPLES / "router.py:nothing_here") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "nothing_here" in err


def test_an_unknown_format_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("graph", EXAMPLES / "router.py:pipeline", "--format", "svg") == 2
    assert "invalid choice: 'svg'" in capsys.readouterr().err


@attrs.frozen(eq=False)
class Either(Step):
    """A step kind the diagram has never heard of: two bodies, by their children()."""

    name: str
    left: AgentStep
    right: AgentStep
    input_type: Any = str
    output_type: Any = str

    def children(self) -> tuple[tuple[str, Step | Pipeline], ...]:
        return (("left", self.left), ("right", self.right))


def test_a_new_step_kind_is_drawn_from_its_children() -> None:
    either = Either("either", AgentStep("l", StubAgent([])), AgentStep("r", StubAgent([])))

    drawn = Pipeline.of(either).to_dot()

    assert drawn == (
        'digraph "pipeline" {\n'
        "    rankdir=TB;\n"
        '    input [label="input", shape=oval];\n'
        "    subgraph cluster_c1 {\n"
        '        label="either";\n'
        '        n2 [label="Either", shape=hexagon];\n'
        '        n4 [label="l", shape=box];\n'
        '        n5 [label="r", shape=box];\n'
        '        n3 [label="merge", shape=circle];\n'
        "    }\n"
        '    output [label="output", shape=oval];\n'
        '    input -> n2 [label="str"];\n'
        '    n2 -> n4 [label="left"];\n'
        '    n4 -> n3 [label="Any"];\n'
        '    n2 -> n5 [label="right"];\n'
        '    n5 -> n3 [label="Any"];\n'
        '    n3 -> output [label="str"];\n'
        "}\n"
    )
