"""The shape of the code: layers that import downwards only, no cycles, kinds in one registry.

These tests read the source (``ast``), so they check every module, not only those a test imports:

* the import graph of ``hefed`` and the CLI has no cycle;
* every import points down the chain primitives → stats → data → kinds → protocol → models →
  roles → analysis → sim → flower → recipe layer (``hefed/__init__.py``, which imports nothing
  at run time) → cli;
* no ``hefed`` module imports another ``hefed`` module inside a function (the way one dodges a
  cycle); third-party imports may be deferred (start-up time), and so may the CLI's commands;
* modules that are not API are private, and no public name shadows a module;
* no module outside ``hefed/kinds`` spells out the list of bundle kinds.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import hefed

ROOT = Path(__file__).resolve().parents[1]

#: Rank of each layer: a module may import modules of its own rank or below, never above.
RANKS = {
    "hefed.errors": 0, "hefed._files": 0, "hefed._pool": 0, "hefed._version": 0, "hefed._lazy": 0,
    "hefed._keys": 1, "hefed.primitives": 1,
    "hefed.stats": 2,
    "hefed.data": 3, "hefed.datasets": 3,
    "hefed.kinds": 4,
    "hefed.protocol": 5,
    "hefed.models": 6,
    "hefed.roles": 7,
    "hefed.analysis": 8, "hefed.monitoring": 8,
    "hefed.sim": 9,
    "hefed.flower": 10,
    "hefed": 11,  # the recipe layer: imports everything, lazily; only the CLI imports it
    "hefed_cli": 12,
}

#: Modules without a leading underscore that are public API on purpose.
PUBLIC_MODULES = {
    "hefed.errors", "hefed.datasets",
    "hefed.primitives.shamir",  # t-of-n secret sharing, for the drop-out recovery of masked rounds
    # the fenced "hazmat" layer: raw Paillier, DJN, packing, exact algebra
    "hefed.primitives.paillier", "hefed.primitives.djn", "hefed.primitives.packing", "hefed.primitives.exactgram",
    "hefed.primitives.exactsolve", "hefed.primitives.encryption", "hefed.primitives.discrete_gaussian",
    "hefed.primitives.certified",  # ball arithmetic certifying float64 results, exact rational solves (FLINT)
    # Flower loads the app by module path; the launcher and project are documented entry points
    "hefed.flower.app", "hefed.flower.launcher", "hefed.flower.project", "hefed.flower.__main__",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "cli":
        parts[0] = "hefed_cli"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = sorted([*ROOT.joinpath("hefed").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")])
    return {_module_name(path): path for path in files}


SOURCES = _sources()


def _is_package(module: str) -> bool:
    return SOURCES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _resolve(module, node)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]
    return sorted({n for n in names if n in SOURCES})


def _under_type_checking(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if hasattr(inner, "lineno"):
                    lines.add(inner.lineno)
    return lines


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """(module-level run-time edges, function-level project imports inside hefed) of every module."""
    edges: dict[str, set[str]] = {m: set() for m in SOURCES}
    deferred: list[str] = []
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = _under_type_checking(tree)
        top_level = {id(node) for node in tree.body}
        top_level |= {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try)) for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in typing_only:
                continue
            targets = _targets(module, node)
            if id(node) in top_level:
                edges[module].update(t for t in targets if t != module)
            elif targets and module.startswith("hefed."):
                deferred.append(f"{module} (line {node.lineno}) imports {', '.join(targets)} inside a function")
            elif targets:
                edges[module].update(targets)  # the CLI's deferred imports still point down
    return edges, deferred


EDGES, DEFERRED = _imports()


def _rank(module: str) -> int:
    best = max((prefix for prefix in RANKS if module == prefix or module.startswith(prefix + ".")), key=len)
    return RANKS[best]


def test_the_import_graph_has_no_cycle():
    """Tarjan's strongly connected components over the module-level imports: every one is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for module in SOURCES:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_point_down_the_layers():
    upward = [f"{m} (layer {_rank(m)}) imports {t} (layer {_rank(t)})"
              for m, targets in EDGES.items() for t in targets if _rank(t) > _rank(m)]
    assert not upward, "\n".join(upward)


def test_the_recipe_layer_imports_nothing_at_run_time():
    assert EDGES["hefed"] <= {"hefed._version", "hefed._lazy"}, EDGES["hefed"]


def test_no_hefed_module_imports_another_inside_a_function():
    assert not DEFERRED, "\n".join(DEFERRED)


def test_the_graph_is_real():
    """The checks above would pass on an empty graph: make sure the parser sees the known edges."""
    assert "hefed.stats" in EDGES["hefed.data._tables"]
    assert "hefed.kinds" in EDGES["hefed.protocol._bundle"]
    assert {"hefed.protocol", "hefed.kinds"} <= EDGES["hefed.roles._factory"]
    assert len(SOURCES) > 60 and sum(map(len, EDGES.values())) > 150


def test_modules_that_are_not_api_are_private():
    public = sorted(m for m in SOURCES if m.startswith("hefed.")
                    and not any(part.startswith("_") for part in m.split(".")[1:])
                    and not _is_package(m) and m not in PUBLIC_MODULES)
    assert not public, f"public modules that are not listed as API: {public}"


@pytest.mark.parametrize("package", sorted(m for m in SOURCES if m.startswith("hefed") and _is_package(m)))
def test_no_public_name_shadows_a_module(package):
    if package == "hefed.flower":
        pytest.importorskip("flwr")
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        name = f"{package}.{info.name}"
        if name == "hefed.flower.app" or info.name == "__main__":
            continue  # imports Flower's app machinery; checked by the Flower tests
        module = importlib.import_module(name)
        assert getattr(pkg, info.name) is module, f"{package}.{info.name} is not the module {name}"


def test_bundle_kinds_are_named_only_in_the_registry():
    """No collection of kind names (a list, tuple, set or the keys of a dict holding two or more of them)
    outside hefed/kinds: everything else asks the registry (kind_names(), Kind attributes)."""
    from hefed.kinds import kind_names

    names = set(kind_names())
    offenders = []
    for module, path in SOURCES.items():
        if module.startswith("hefed.kinds"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(
                node, (ast.List, ast.Tuple, ast.Set)) else []
            found = {item.value for item in items if isinstance(item, ast.Constant) and item.value in names}
            if len(found) >= 2:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(found)}")
    assert not offenders, "kind names listed outside the registry:\n" + "\n".join(offenders)


def test_the_recipe_layer_exports_resolve():
    for name in hefed.__all__:
        assert getattr(hefed, name) is not None
    assert set(dir(hefed)) == set(hefed.__all__)


#: Library parameters no hefed command takes as an option (set only from Python).
LIBRARY_ONLY_PARAMETERS = {"encoding"}


def test_every_parameter_an_error_names_maps_to_a_cli_option():
    """An error that advises changing a setting names the library parameter; the CLI must be able to name
    its option, or the user is told to change something they cannot find."""
    from cli.output import PARAMETER_OPTIONS

    named: dict[str, str] = {}
    for path in sorted((ROOT / "hefed").rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(call, ast.Call):
                continue
            for keyword in call.keywords:
                if keyword.arg == "parameters" and isinstance(keyword.value, ast.Tuple):
                    for element in keyword.value.elts:
                        if isinstance(element, ast.Constant) and isinstance(element.value, str):
                            named.setdefault(element.value, f"{path.relative_to(ROOT)}:{call.lineno}")
    unmapped = {name: where for name, where in named.items()
                if name not in PARAMETER_OPTIONS and name not in LIBRARY_ONLY_PARAMETERS}
    assert len(named) > 20 and not unmapped, unmapped
