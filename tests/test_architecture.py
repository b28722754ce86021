"""The architecture, as tests: which package may import which, and what each namespace exports.

The layers are ``actors`` (the kernel, no pipeline concepts) beneath
``persistence`` (stores; its writer is an actor) beneath ``runtime``;
``testing`` sits on top. Every module's imports are read with ``ast``
(nothing is imported to find them), including imports inside functions,
under ``TYPE_CHECKING`` and relative ones, so a lazy import cannot hide a
dependency that points the wrong way.

Each public namespace's ``__all__`` is exactly its public names, and
every ``python`` block of the README compiles and imports only names
that exist, so the documented API and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Where each installed package's sources live in the checkout (see pyproject's package-dir).
PACKAGES = {
    "trioflow.actors": ROOT / "actors",
    "trioflow.runtime": ROOT / "runtime",
    "trioflow.persistence": ROOT / "persistence",
    "trioflow.testing": ROOT / "testing",
}

#: Every namespace a user imports from; each must list exactly its public names in ``__all__``.
PUBLIC_NAMESPACES = (
    "trioflow.actors",
    "trioflow.runtime",
    "trioflow.runtime.agents",
    "trioflow.runtime.traces",
    "trioflow.runtime.lowlevel",
    "trioflow.persistence",
    "trioflow.testing",
)


def module_name(package: str, source: Path) -> str:
    """``trioflow.runtime._steps._fanout`` for ``runtime/_steps/_fanout.py``."""
    parts = source.relative_to(PACKAGES[package]).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def imported_modules(source: str, module: str, *, is_package: bool) -> Iterator[str]:
    """Every module ``source`` (the text of ``module``) imports, anywhere in it, made absolute."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{anchor}.{node.module}" if node.module else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def trioflow_packages_imported_by(package: str) -> dict[str, set[str]]:
    """The other trioflow packages ``package`` imports, each with the modules that import it."""
    found: dict[str, set[str]] = {}
    for source in sorted(PACKAGES[package].rglob("*.py")):
        module = module_name(package, source)
        text = source.read_text(encoding="utf-8")
        for imported in imported_modules(text, module, is_package=source.name == "__init__.py"):
            target = next((name for name in PACKAGES if _within(imported, name)), None)
            if target is not None and target != package:
                found.setdefault(target, set()).add(module)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_the_import_reader_sees_lazy_relative_and_dynamic_imports() -> None:
    source = (
        "import trioflow.actors\n"
        "def later():\n"
        "    from ..runtime._governor import Governor\n"
        "    from . import _codec\n"
        "    importlib.import_module('trioflow.testing')\n"
    )
    assert sorted(imported_modules(source, "trioflow.persistence._sqlite", is_package=False)) == [
        "trioflow.actors",
        "trioflow.persistence",
        "trioflow.persistence._codec",
        "trioflow.runtime._governor",
        "trioflow.runtime._governor.Governor",
        "trioflow.testing",
    ]


def test_the_kernel_imports_nothing_of_trioflow() -> None:
    assert trioflow_packages_imported_by("trioflow.actors") == {}


def test_persistence_depends_on_the_kernel_only() -> None:
    """The stores use the kernel (the SQLite writer is an actor, traces are kept), not runtime."""
    imported = trioflow_packages_imported_by("trioflow.persistence")
    assert sorted(imported) == ["trioflow.actors"]


def test_the_runtime_does_not_import_the_testing_kit() -> None:
    assert "trioflow.testing" not in trioflow_packages_imported_by("trioflow.runtime")


def public_names(namespace: types.ModuleType) -> set[str]:
    """What ``from namespace import *`` would offer without ``__all__``: no modules, no futures."""
    return {
        name
        for name, value in vars(namespace).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }


@pytest.mark.parametrize("name", PUBLIC_NAMESPACES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    namespace = importlib.import_module(name)
    exported = list(namespace.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    assert set(exported) == public_names(namespace)


@pytest.mark.parametrize("name", PUBLIC_NAMESPACES)
def test_every_name_in_all_is_importable(name: str) -> None:
    for exported in importlib.import_module(name).__all__:
        scope: dict[str, object] = {}
        exec(f"from {name} import {exported}", scope)
        assert exported in scope


def test_the_kernel_exports_its_api_and_not_its_internals() -> None:
    import trioflow.actors

    assert sorted(trioflow.actors.__all__) == [
        "Actor",
        "ActorError",
        "ActorRef",
        "ActorStopped",
        "Ask",
        "AskTimeout",
        "ChildFailed",
        "DEFAULT_MAILBOX_SIZE",
        "ESCALATE",
        "Escalate",
        "MemoryTraceSink",
        "Reply",
        "ReplyInbox",
        "Restart",
        "Strategy",
        "Supervisor",
        "TeeTraceSink",
        "TraceEvent",
        "TraceKind",
        "TraceSink",
        "open_supervisor",
    ]


# -- the README's code --------------------------------------------------------------------------

README = ROOT / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    assert len(readme_blocks()) >= 3


@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_every_readme_python_block_compiles(number: int) -> None:
    compile(readme_blocks()[number], f"README.md python block {number + 1}", "exec")


@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_every_trioflow_import_in_the_readme_resolves(number: int) -> None:
    tree = ast.parse(readme_blocks()[number])
    for node in ast.walk(tree):
        module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
        if isinstance(node, ast.ImportFrom) and module.startswith("trioflow"):
            namespace = importlib.import_module(module)
            missing = [a.name for a in node.names if not hasattr(namespace, a.name)]
            assert missing == [], f"README block {number + 1}: {module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("trioflow"):
                    importlib.import_module(alias.name)
