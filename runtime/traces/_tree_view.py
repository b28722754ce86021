"""How the command line shows a run's trace: a tree for people, JSON for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from .._money import format_usd
from .._safe_text import shown
from ._tree import NodeKind, NodeStatus, RunTrace, TraceNode

_STYLES = {
    NodeStatus.OK: "green",
    NodeStatus.FAILED: "bold red",
    NodeStatus.CANCELLED: "yellow",
    NodeStatus.PAUSED: "bold yellow",
    NodeStatus.RUNNING: "cyan",
}


def node_line(node: TraceNode) -> str:
    """One node as plain text: path, status, duration, attempts, cost, tokens, reason.

    An attempt is not an actor: it is shown by its name (``attempt 2``).
    """
    attempt = node.kind is NodeKind.ATTEMPT
    parts = [node.name if attempt else node.path, node.status.value, f"{node.duration_s:.3f}s"]
    if not attempt:
        parts.append(f"{node.attempts} attempt" + ("" if node.attempts == 1 else "s"))
    parts += [format_usd(node.cost_usd), f"{node.tokens} tokens"]
    if node.restored:
        parts.append("(restored)")
    line = "  ".join(parts)
    return line if node.reason is None else f"{line}  - {node.reason}"


def tree_lines(roots: Sequence[TraceNode]) -> list[tuple[str, TraceNode]]:
    """``(guide, node)`` per node, depth first; the guide draws the tree (``├── ``, ``│   ``)."""
    lines: list[tuple[str, TraceNode]] = []

    def add(node: TraceNode, guide: str, below: str) -> None:
        lines.append((guide, node))
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            add(child, below + ("└── " if last else "├── "), below + ("    " if last else "│   "))

    for root in roots:
        add(root, "", "")
    return lines


def print_trace(console: Console, trace: RunTrace, roots: Sequence[TraceNode]) -> None:
    """A header line, then the tree of ``roots`` (all of ``trace``'s, or a filtered part).

    One line per node, never wrapped or cropped, so the output can be searched.
    """
    console.print(
        f"[bold]run:[/] {trace.run_id}   [bold]pipeline:[/] {shown(trace.pipeline_name)}   "
        f"[bold]status:[/] {trace.status}   [bold]started:[/] "
        f"{trace.started_at.strftime('%Y-%m-%d %H:%M:%S')} UTC   "
        f"[bold]events:[/] {len(trace.events)}",
        soft_wrap=True,
    )
    if not roots:
        console.print("no actor matches", soft_wrap=True)
    for guide, node in tree_lines(roots):
        style = _STYLES[node.status]
        status = node.status.value
        line = shown(node_line(node))
        # Colour the status word: the first "  <status>  " (paths hold no double space).
        line = line.replace(f"  {status}  ", f"  [{style}]{status}[/]  ", 1)
        console.print(f"[dim]{guide}[/]{line}", soft_wrap=True, highlight=False)


def node_document(node: TraceNode) -> dict[str, Any]:
    """A node and its children as JSON-ready values (money as exact decimal strings)."""
    return {
        "path": node.path,
        "name": node.name,
        "kind": node.kind.value,
        "status": node.status.value,
        "start_s": round(node.start_s, 6),
        "end_s": round(node.end_s, 6),
        "duration_s": round(node.duration_s, 6),
        "started_at": node.started_at.isoformat(),
        "attempts": node.attempts,
        "cost_usd": str(node.cost_usd),
        "tokens": node.tokens,
        "reason": node.reason,
        "restored": node.restored,
        "children": [node_document(child) for child in node.children],
    }


def trace_json(trace: RunTrace, roots: Sequence[TraceNode]) -> str:
    """The run and the tree of ``roots`` as one JSON document."""
    document = {
        "run_id": trace.run_id,
        "pipeline": trace.pipeline_name,
        "status": trace.status,
        "started_at": trace.started_at.isoformat(),
        "events": len(trace.events),
        "nodes": [node_document(root) for root in roots],
    }
    return json.dumps(document, indent=2)
