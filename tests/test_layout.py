"""The code's layout as docs/architecture.md draws it: the folders of ``platform/arena`` import
one another in one direction only, so each can be read (and tested) knowing only those
below it. Cycles crept in before (sandbox ⇄ intake over ``SubmissionCode``, competition ⇄
execution over a round's publish check); this keeps them out."""

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import arena

ROOT = Path(arena.__file__).parent


def _part(module: str) -> str | None:
    """The folder (or top-level module) of ``arena.x.y`` that a dependency is counted on."""
    parts = module.split(".")
    if parts[0] != "arena" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "arena":
                found |= {alias.name for alias in node.names}
            elif part := _part(node.module):
                found.add(part)
        elif isinstance(node, ast.Import):
            found |= {part for alias in node.names if (part := _part(alias.name))}
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT).parts
        part = relative[0].removesuffix(".py")
        if part == "__main__":
            continue
        graph[part] |= _imports(path) - {part}
    return graph


def test_the_folders_import_one_another_in_one_direction():
    graph = _graph()
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"an import cycle between parts of arena: {' -> '.join(exc.args[1])}") from None
    assert order.index("sandbox") < order.index("intake") < order.index("actions")
    assert order.index("competition") < order.index("execution")


def test_nothing_below_the_interfaces_imports_them():
    """The web and the command line are the top: the domain never calls back into either."""
    graph = _graph()
    for part, imported in graph.items():
        if part not in {"web", "cli"}:
            assert not imported & {"web", "cli"}, f"{part} imports {imported & {'web', 'cli'}}"
