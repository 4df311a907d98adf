"""The shape of the code, read from its source: arrows point one way, modules stay readable."""

import ast
import importlib
from pathlib import Path

from conftest import PROJECT_ROOT

PACKAGES = ("core", "training", "streaming", "replay", "benchmarks")
LAYERS = {"core": 0, "training": 1, "streaming": 1, "replay": 2, "benchmarks": 3}
MAX_MODULE_LINES = 500


def project_modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts): path
        for package in PACKAGES
        for path in sorted((PROJECT_ROOT / package).glob("*.py"))
    }


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_reader_finds_a_cycle_when_there_is_one():
    # given a graph with a cycle and one without, then only the first is reported
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_project_modules():
    graph = import_graph()
    assert len(graph) > 30 and graph["training.train"], "the reader found the project's imports"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_arrows_point_down_the_layers():
    # core is the shared ground; training and streaming build on it; replay may use training's
    # fitting (the NAB benchmark trains); benchmarks measure everything.
    upward = [
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if LAYERS[target.split(".")[0]] > LAYERS[module.split(".")[0]]
    ]
    assert upward == []


def test_no_module_is_too_long_to_read_in_one_sitting():
    long = {
        name: n
        for name, path in project_modules().items()
        if name.split(".")[0] != "benchmarks" and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


# A model-from-code file for `mlflow models serve`, which registers its model when imported.
NOT_IMPORTABLE_ALONE = {"benchmarks.serving_floor"}


def test_every_project_module_imports():
    # an import that names something a module no longer defines fails here, not in a job
    failed = {}
    for name in sorted(set(project_modules()) - NOT_IMPORTABLE_ALONE):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - every failure is reported at once
            failed[name] = f"{type(error).__name__}: {error}"
    assert failed == {}
