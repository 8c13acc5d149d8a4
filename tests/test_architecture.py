"""The layers stay layers: no import circle among dlgrade's modules, and the spec stays light enough for the kernel.

The import graph is read from the source with `ast`, so it sees every import, module-level and inside functions
alike: a lazy import that closes a circle is still a circle (it only moves the failure from import time to the first
call). `from pkg import name` is an edge to the module `pkg.name` when there is one, else to `pkg` itself; the
implicit import of a parent package (`harness/__init__.py` before `harness.spec`) is no edge of its own.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "reference", "grading")


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Candidate module names an import statement names, most specific first per name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the module's own package, one level up per extra dot
        base = module.split(".")[: None if is_package else -1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    return [f"{source}.{alias.name}" for alias in node.names] + [source]


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """module -> {imported module of these packages: line of the first import}, from every import statement."""
    modules = module_names(root, packages)
    graph = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            candidates = _imported(node, module, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                # `from pkg import sub` imports the submodule; `from pkg.mod import name` imports pkg.mod
                source = candidates[-1]
                targets = [c for c in candidates[:-1] if c in modules] or [source]
            else:
                targets = candidates
            for target in targets:
                while target and target not in modules:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The circles (a, b, ..., a) to untie: in each group of modules that import one another (Tarjan's strongly
    connected components), the shortest circle through each member, written from its smallest module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(set(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = set()
    for group in groups:
        for member in sorted(group):
            circle = _path_back(graph, member, group)[:-1]
            first = circle.index(min(circle))
            found.add(tuple(circle[first:] + circle[:first] + [min(circle)]))
    return sorted(list(circle) for circle in found)


def _path_back(graph: dict[str, dict[str, int]], start: str, group: set[str]) -> list[str]:
    """The shortest import path from `start` back to itself inside its group (breadth first)."""
    previous = {start: None}
    queue = [start]
    for node in queue:
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if target in group and target not in previous:
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"no path back to {start} in {sorted(group)}")


def circle_report(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Each circle as one line naming every import that makes it: file and line."""
    graph, paths = import_graph(root, packages), module_names(root, packages)
    return ["import circle: " + "; ".join(
        f"{module} -> {target} ({paths[module].relative_to(root)}:{graph[module][target]})"
        for module, target in zip(circle, circle[1:])) for circle in circles(graph)]


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_no_import_circles_in_harness_reference_grading():
    report = circle_report(REPO, PACKAGES)
    assert report == [], "\n".join(report)


def test_a_planted_circle_through_a_lazy_import_is_named(tmp_path):
    # positive control: a imports b at module level (relative), b imports a inside a function
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n\nVALUE = 1\n",
        "pkg/b.py": "import json\n\n\ndef late():\n    from pkg.a import VALUE\n    return VALUE\n",
        "pkg/c.py": "from pkg.b import late\n",  # depends on the circle, is not part of it
    })
    assert circle_report(tmp_path, ("pkg",)) == [
        "import circle: pkg.a -> pkg.b (pkg/a.py:1); pkg.b -> pkg.a (pkg/b.py:5)"]


def test_a_longer_circle_across_packages_is_named_in_order(tmp_path):
    write_package(tmp_path, {
        "low/__init__.py": "",
        "low/base.py": "def f():\n    import top.cli\n",
        "mid/__init__.py": "",
        "mid/core.py": "import low.base\n",
        "top/__init__.py": "",
        "top/cli.py": "from mid import core\n",
    })
    assert circle_report(tmp_path, ("low", "mid", "top")) == [
        "import circle: low.base -> top.cli (low/base.py:2); top.cli -> mid.core (top/cli.py:1); "
        "mid.core -> low.base (mid/core.py:1)"]


def test_a_package_init_importing_its_own_submodule_is_no_circle(tmp_path):
    # harness/__init__.py imports harness.submit lazily, and every harness module implicitly imports the package
    write_package(tmp_path, {
        "pkg/__init__.py": "def submit():\n    from pkg.submit import submit\n",
        "pkg/submit.py": "from pkg import spec\n",
        "pkg/spec.py": "from pkg.errors import Error\n",
        "pkg/errors.py": "class Error(Exception):\n    pass\n",
    })
    assert circle_report(tmp_path, ("pkg",)) == []


def test_importing_the_spec_loads_neither_the_sandbox_nor_psutil():
    # the student's kernel imports harness.spec's declarations through harness.submit; loading an assignment
    # (the grader) must not start the sandbox modules either
    code = ("import sys, harness.spec, harness.submit; "
            "print(sorted(m for m in ('psutil', 'harness.execute', 'harness.processes', 'harness.zygote') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# One error family ------------------------------------------------------------------------------------------------
# Outside DlgradeError on purpose, each caught where it is raised and turned into an outcome (see their docstrings).
INTERNAL_ONLY = {"harness.zygote.ZygoteDied", "harness.isolation.IsolationError"}


def exception_classes() -> dict[str, type]:
    """Every exception class defined in dlgrade's packages, by qualified name (modules that define classes only)."""
    import importlib

    found = {}
    for module, path in module_names(REPO, PACKAGES).items():
        names = [node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)]
        if names:
            loaded = importlib.import_module(module)
            found.update({f"{module}.{name}": getattr(loaded, name) for name in names
                          if issubclass(getattr(loaded, name), BaseException)})
    return found


def test_every_error_class_is_of_the_dlgrade_family():
    from harness.errors import DlgradeError

    classes = exception_classes()
    assert "harness.errors.SpecError" in classes and INTERNAL_ONLY <= set(classes)  # the scan sees them
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, DlgradeError))
    assert outside == sorted(INTERNAL_ONLY)


def test_an_unexpected_value_error_in_a_command_exits_3_as_internal_error(monkeypatch, capsys):
    from grading.cli import main

    def broken_load_spec(assignment):
        raise ValueError("a bug deep inside dlgrade")

    monkeypatch.setattr("harness.spec.load_spec", broken_load_spec)
    assert main(["validate", "shapes_params"]) == 3
    err = capsys.readouterr().err
    assert "ValueError: a bug deep inside dlgrade" in err  # the traceback, for the bug report
    assert "dlgrade validate: internal error (a bug in dlgrade, not in the notebook): a bug deep inside dlgrade" in err


def test_an_unexpected_file_not_found_in_a_command_exits_3(monkeypatch, capsys):
    from grading.cli import main

    def broken_load_spec(assignment):
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/cache.json")

    monkeypatch.setattr("harness.spec.load_spec", broken_load_spec)
    assert main(["validate", "shapes_params"]) == 3
    assert "internal error" in capsys.readouterr().err


def test_a_model_torch_export_cannot_capture_is_bad_input_for_profile(tmp_path, capsys):
    from grading.cli import main

    (tmp_path / "branchy.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Branchy(nn.Linear):\n    def forward(self, x):\n"
        "        return super().forward(x) if x.sum() > 0 else -super().forward(x)\n\n\n"
        "def make():\n    return Branchy(4, 2)\n")
    assert main(["profile", f"{tmp_path / 'branchy.py'}:make", "--input-shape", "4"]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]  # torch logs its own warning before
    assert last_line.startswith("dlgrade profile: ") and "use torch.where(...)" in last_line
