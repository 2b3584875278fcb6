"""The layout of the library: layers point one way and no module imports itself in a circle.

``models`` imports neither ``planning`` nor ``inference``; ``planning`` does not import
``inference``. Every import counts, also the ones inside functions (a lazy import is still
a dependency). Modules stay small enough to read in one go."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"models": 0, "planning": 1, "inference": 2}  # package -> layer


def _modules() -> dict[str, pathlib.Path]:
    return {f"varibased.{package}.{path.stem}": path
            for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))}


def _imports(path: pathlib.Path) -> set[str]:
    """The ``varibased.*`` modules a file imports (``from varibased.x import y`` counts ``y``
    when it is a module)."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
