"""The core's shape, checked from its source: no import circles, the boundaries of DESIGN.md,
and plugins that use only the public API (names listed in an ``__all__``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "etalumis_core"
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/etalumis_*") if p.is_dir())


def module_name(path: Path, base: Path, package: str) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def core_modules() -> dict[str, Path]:
    return {module_name(p, CORE, "etalumis_core"): p for p in CORE.rglob("*.py")
            if "ppx/ppx" not in p.as_posix()}   # flatc's generated wire classes


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, module: str) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` of every import in the file, wherever it stands
    (a lazy import inside a function still ties the two modules together), except under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.extend((base, alias.name, node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, name, _ in imports(path, module):
            if name and f"{target}.{name}" in modules:
                target = f"{target}.{name}"   # `from package import submodule`
            if target in modules and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_core_has_no_import_circles():
    found = cycles(import_graph())
    assert not found, "import circles in etalumis_core:\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def reached(module: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


@pytest.mark.parametrize("module", ["etalumis_core.distributions", "etalumis_core.trace",
                                    "etalumis_core.seeding"])
def test_the_bottom_of_the_core_imports_nothing_of_it(module):
    graph = import_graph()
    assert graph[module] <= {"etalumis_core.errors"}, sorted(graph[module])


def third_party(prefix: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, path in core_modules().items():
        if module.startswith(prefix):
            out[module] = {t.split(".")[0] for t, _, _ in imports(path, module)}
    return out


def test_engines_know_no_sockets_hdf5_or_configs():
    for module, used in third_party("etalumis_core.engines").items():
        assert not used & {"zmq", "h5py", "hydra", "omegaconf"}, (module, used)
    graph = import_graph()
    for module in graph:
        if module.startswith("etalumis_core.engines"):
            bad = {m for m in graph[module] if m.startswith(("etalumis_core.ppx",
                                                             "etalumis_core.app"))}
            assert not bad, (module, bad)


def test_ppx_knows_nothing_of_engines():
    graph = import_graph()
    for module in graph:
        if module.startswith("etalumis_core.ppx"):
            assert not {m for m in graph[module] if m.startswith("etalumis_core.engines")}


def test_only_the_application_reads_configs():
    for module, used in third_party("etalumis_core").items():
        if not module.startswith("etalumis_core.app"):
            assert not used & {"hydra", "omegaconf"}, (module, used)


# -- plugins use the public API only ----------------------------------------------------------
def public_names(module: str) -> set[str] | None:
    value = getattr(importlib.import_module(module), "__all__", None)
    return set(value) if value is not None else None


def private_uses(path: Path) -> list[str]:
    """Names a plugin file takes from etalumis_core that no ``__all__`` lists."""
    tree = ast.parse(path.read_text(), str(path))
    problems = []
    aliases: dict[str, str] = {}   # local name -> core module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (
                node.module or "").split(".")[0] == "etalumis_core":
            allowed = public_names(node.module)
            for alias in node.names:
                if allowed is None or alias.name not in allowed:
                    problems.append(f"{path.name}:{node.lineno}: from {node.module} import "
                                    f"{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "etalumis_core":
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                module, name = aliases[base.id], chain[-1]
                allowed = public_names(module)
                if allowed is None or name not in allowed:
                    problems.append(f"{path.name}:{node.lineno}: {module}.{name}")
    return problems


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugins_import_only_public_names(plugin):
    problems = [p for path in sorted(plugin.rglob("*.py")) for p in private_uses(path)]
    assert not problems, ("names outside every __all__ of etalumis_core:\n"
                          + "\n".join(problems))


def test_a_private_import_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import etalumis_core as et\nfrom etalumis_core.posterior import _logsumexp\n"
                   "x = et.Normal\ny = et.not_public\n")
    problems = private_uses(bad)
    assert len(problems) == 2 and "_logsumexp" in problems[0] and "not_public" in problems[1]
