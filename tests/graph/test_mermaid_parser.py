"""The diagrams as Mermaid itself reads them: mermaid's own parser, under node.

``mermaid`` (with ``jsdom``, the DOM its label sanitizer needs), pinned in
``tests/graph/node``, is installed by ``npm ci`` the first time this module
runs and loaded by ``node/parse_diagram.mjs``, which prints the vertices,
edges (with their labels) and subgraphs the parser found. Node is required:
CI has it, and a machine without it fails here rather than skipping the check.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from node_packages import node_with
from trioflow.runtime._dsl._diagram import Cluster, Diagram, Node, diagram

from tests.graph.every_kind import EVERY_KIND

NODE_DIR = Path(__file__).parent / "node"
PACKAGES = ("mermaid", "jsdom")


@pytest.fixture(scope="session")
def node() -> str:
    return node_with(PACKAGES, NODE_DIR, needed_for="to check diagrams with Mermaid's parser")


def parse(node: str, text: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "diagram.mmd"
    path.write_text(text)
    done = subprocess.run(
        [node, str(NODE_DIR / "parse_diagram.mjs"), str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def nodes(members: tuple[Node | Cluster, ...]) -> list[str]:
    found: list[str] = []
    for member in members:
        found.extend(nodes(member.members) if isinstance(member, Cluster) else [member.id])
    return found


def clusters(members: tuple[Node | Cluster, ...]) -> list[list[Any]]:
    found: list[list[Any]] = []
    for member in members:
        if isinstance(member, Cluster):
            found.extend(clusters(member.members))
            found.append([member.id, member.label, nodes(member.members)])
    return found


def test_mermaid_reads_every_kind_of_step_as_drawn(node: str, tmp_path: Path) -> None:
    graph: Diagram = diagram(EVERY_KIND)
    parsed = parse(node, EVERY_KIND.to_mermaid(), tmp_path)
    assert (parsed["ok"], parsed["type"]) == (True, "flowchart-v2")
    assert sorted(parsed["vertices"]) == sorted(nodes(graph.members))
    assert parsed["edges"] == [[e.source, e.target, e.label] for e in graph.edges]
    assert sorted(parsed["subgraphs"]) == sorted(clusters(graph.members))


def test_the_parser_refuses_a_broken_diagram(node: str, tmp_path: Path) -> None:
    """The check can fail: an unclosed label is a parse error."""
    parsed = parse(node, 'flowchart TD\n    a["x"] -->|"y| b\n', tmp_path)
    assert parsed["ok"] is False
    assert parsed["error"].startswith("Parse error on line ")
