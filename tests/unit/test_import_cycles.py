"""No two modules of the project import each other, directly or through others (issue 12, item 1).

import-linter's layers see packages, not the files inside one; grimp's graph (import-linter's own) does.
"""

import sys
from pathlib import Path

import grimp
import pytest

ROOT_PACKAGES = ("contract", "edge", "stream", "firmware_sim", "dashboards", "wastestream")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph(*ROOT_PACKAGES, cache_dir=None)
    assert import_cycles(graph) == []


def test_a_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: a three-module loop in a scratch package is reported, the module outside it not."""
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("import loopy.c\n")
    (package / "c.py").write_text("from loopy.a import x\n")
    (package / "d.py").write_text("import loopy.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("loopy", cache_dir=None)
    assert import_cycles(graph) == [["loopy.a", "loopy.b", "loopy.c"]]
    sys.modules.pop("loopy", None)
