"""No import circles among dreamvid's modules, and every module imports on its own in a fresh interpreter.

The graph is read from the source with :mod:`ast`, so it holds every import a module can make, not only those a
run happened to make: module-level imports, imports inside functions (a lazy import is an edge too: it runs
later, after whatever its caller imported, and a circle through it is a circle all the same), and
``importlib.import_module`` of a constant or f-string name (``dreamvid.backends.load`` imports
``f"{__name__}.{canon}_backend"``: an f-string is matched against the module names as a pattern). A package's
``__init__`` runs before its submodules, so importing ``dreamvid.video.decode`` is an edge to ``dreamvid.video``
only where the source names the package.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "dreamvid"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (source file, is a package)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


MODULES = _modules()


def _pattern(node: ast.expr, module: str) -> re.Pattern | None:
    """The module names an ``import_module`` argument can be: a constant, or an f-string as a pattern."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.compile(re.escape(node.value))
    if isinstance(node, ast.JoinedStr):
        parts = []
        for piece in node.values:
            if isinstance(piece, ast.Constant):
                parts.append(re.escape(piece.value))
            elif isinstance(piece.value, ast.Name) and piece.value.id == "__name__":
                parts.append(re.escape(module))
            else:
                parts.append(r"[A-Za-z0-9_]+")
        return re.compile("".join(parts))
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the dreamvid modules its source imports (anywhere in it)."""
    graph: dict[str, set[str]] = {}
    for name, (path, package) in MODULES.items():
        here = name if package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import presets` imports the module dreamvid.presets
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in MODULES else target)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args):
                pattern = _pattern(node.args[0], name)
                assert pattern is not None, f"{path}:{node.lineno}: cannot tell which module import_module loads"
                edges.update(m for m in MODULES if pattern.fullmatch(m))
        graph[name] = {m for m in edges if m in MODULES and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root, children in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(children)))]
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_graph_sees_every_kind_of_import():
    """The reader finds what the modules do import: top-level, lazy, ``from . import x`` and dynamic names."""
    graph = import_graph()
    assert "dreamvid.errors" in graph["dreamvid.config"]  # from .errors import ...
    assert "dreamvid.keyframes" in graph["dreamvid.config"]  # inside a function
    assert "dreamvid.presets" in graph["dreamvid.cli"]  # from . import presets
    assert {"dreamvid.backends.tensorflow_backend", "dreamvid.backends.jax_backend",
            "dreamvid.backends.torch_backend"} <= graph["dreamvid.backends"]  # import_module(f"...{canon}_backend")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_among_dreamvid_modules():
    """A helper two modules need lives in a third, lower one (design notes): no module reaches itself."""
    graph = import_graph()
    found = cycles(graph)
    detail = "; ".join(" -> ".join(f"{m} ({', '.join(sorted(graph[m] & set(g)))})" for m in g) for g in found)
    assert not found, f"import circles: {detail}"


#: the modules that import an optional package at module level, and that package
_OPTIONAL = {
    "dreamvid.backends.jax_backend": "jax", "dreamvid.backends.jax_frame": "jax", "dreamvid.backends.jax_common": "jax",
    "dreamvid.backends.torch_backend": "torch",
}  # fmt: skip


def test_the_optional_modules_are_the_ones_that_import_optional_packages():
    """Each module that imports an optional package at module level is listed in _OPTIONAL (and no other)."""
    heavy = {}
    for name, (path, _) in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for n in names:
                if n.split(".")[0] in ("jax", "torch", "ray", "gradio", "selenium"):
                    heavy[name] = n.split(".")[0]
    assert heavy == _OPTIONAL


def test_each_module_imports_in_a_fresh_interpreter():
    """Each module alone, first thing in a new process: none depends on another having been imported before it.
    A module of an optional package that is not installed fails on that package only. (Two processes at a time:
    the TensorFlow backend's import alone takes seconds.)"""

    def fresh(name: str) -> tuple[str, subprocess.CompletedProcess]:
        return name, subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO, capture_output=True,
                                    text=True, timeout=300, check=False)

    failed = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, proc in pool.map(fresh, MODULES):
            package = _OPTIONAL.get(name)
            if package and importlib.util.find_spec(package) is None:
                if f"No module named '{package}'" not in proc.stderr:
                    failed.append(f"{name} (without {package}): {proc.stderr.strip()[-500:]}")
            elif proc.returncode != 0:
                failed.append(f"{name}: {proc.stderr.strip()[-1500:]}")
    assert not failed, "\n".join(failed)
