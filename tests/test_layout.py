"""The layout of the library: layers point one way and no module imports itself in a circle.

``models`` imports neither ``planning`` nor ``inference``; ``planning`` does not import
``inference``. Every import counts, also the ones inside functions (a lazy import is still
a dependency). Modules stay small enough to read in one go."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 450
PACKAGES = {"models": 0, "planning": 1, "inference": 2}  # package -> layer


def _modules() -> dict[str, pathlib.Path]:
    return {f"varibased.{package}.{path.stem}": path
            for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never
    imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: pathlib.Path) -> set[str]:
    """The ``varibased.*`` modules a file imports at run time (``from varibased.x import y``
    counts ``y`` when it is a module)."""
    modules = _modules()
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("varibased."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("varibased"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules)
    return {name for name in found if name in modules or name.count(".") == 1}


def _package(module: str) -> str:
    return module.split(".")[1]


def test_no_upward_imports():
    upward = []
    for module, path in _modules().items():
        for target in _imports(path):
            if target.count(".") >= 1 and PACKAGES[_package(target)] > PACKAGES[_package(module)]:
                upward.append(f"{module} imports {target}")
    assert not upward, "upward imports (models < planning < inference):\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {module: {t for t in _imports(path) if t in _modules()} for module, path in _modules().items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(module, stack):
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_catch_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from varibased.inference import runner\n")
    assert "varibased.inference.runner" in _imports(bad)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_modules_are_small(package):
    long = {path.name: n for path in (ROOT / package).glob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines in {package}/: {long}"


def test_nothing_imports_the_bare_folders():
    bare = []
    for path in [*ROOT.glob("*/*.py"), *ROOT.glob("tests/**/*.py")]:
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bare += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in PACKAGES]
    assert not bare, "bare imports (use varibased.*):\n" + "\n".join(bare)
