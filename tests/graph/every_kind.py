"""A pipeline with every kind of step, and its diagram as written by hand."""

from __future__ import annotations

from typing import Any

import pydantic
from trioflow.runtime import AgentStep, Step, step
from trioflow.runtime.agents import StubAgent


class Verdict(pydantic.BaseModel):
    approved: bool


@step
async def outline(topic: str) -> list[str]:
    return [topic]


@step
async def write(section: str) -> str:
    return section


@step
async def join(parts: list[Any]) -> str:
    return " ".join(parts)


@step
async def tidy(text: str) -> str:
    return text


@step
async def shorten(text: str) -> str:
    return text[:10]


def is_long(text: str, context: Any) -> str:
    return "long" if len(text) > 10 else "short"


EVERY_KIND = (
    outline
    >> Step.map_over("sections", write, max_concurrency=3)
    >> join
    >> Step.loop_until("polish", tidy >> shorten, lambda out, ctx: True, max_loops=3)
    >> Step.branch_on("size", is_long, {"long": shorten}, default=tidy)
    >> Step.router("experts", StubAgent([["a"]]), {"a": tidy, "b": shorten})
    >> AgentStep(
        "answer",
        StubAgent(["x"]),
        input_type=dict[str, Any],
        output_type=str,
        fallback=AgentStep(
            "backup", StubAgent(["y"]), fallback=AgentStep("last", StubAgent(["z"]))
        ),
    )
    >> (tidy >> shorten).named("finish").as_step()
    >> Step.human_in_the_loop("approve", 'Ship "it"?', Verdict)
).named("every kind")

EVERY_KIND_MERMAID = """\
flowchart TD
    input(["input"])
    n1["outline"]
    subgraph c2["sections"]
        n3{{"each item of the input, 3 at once"}}
        n4["write"]
        n5(("collect"))
    end
    n6["join"]
    subgraph c7["polish"]
        n8["tidy"]
        n9["shorten"]
        n10{"until done, at most 3"}
    end
    subgraph c11["size"]
        n12{"branch on"}
        n14["shorten"]
        n15["tidy"]
        n13(("merge"))
    end
    subgraph c16["experts"]
        n17{"router: router"}
        n19["tidy"]
        n20["shorten"]
        n18(("merge"))
    end
    n21["answer"]
    n22["backup"]
    n23["last"]
    subgraph c24["finish"]
        n25["tidy"]
        n26["shorten"]
    end
    n27[/"approve: Ship #quot;it#quot;?"/]
    output(["output"])
    input -->|"str"| n1
    n1 -->|"list[str]"| n3
    n3 -->|"str"| n4
    n4 -->|"str"| n5
    n5 -->|"list[Any]"| n6
    n6 -->|"str"| n8
    n8 -->|"str"| n9
    n9 -->|"str"| n10
    n10 -.->|"again"| n8
    n10 -->|"Any"| n12
    n12 -->|"long"| n14
    n14 -->|"str"| n13
    n12 -->|"default"| n15
    n15 -->|"str"| n13
    n13 -->|"Any"| n17
    n17 -->|"a"| n19
    n19 -->|"str"| n18
    n17 -->|"b"| n20
    n20 -->|"str"| n18
    n18 -->|"dict[str, Any]"| n21
    n21 -.->|"fallback"| n22
    n22 -.->|"fallback"| n23
    n21 -->|"str"| n25
    n25 -->|"str"| n26
    n26 -->|"str"| n27
    n27 -->|"Verdict"| output
"""
