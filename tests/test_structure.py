"""The package's import structure: one direction, no cycle, nothing below the
command line imports it."""

import ast
import subprocess
import sys
from pathlib import Path

import landscape

PACKAGE = Path(landscape.__file__).parent
COMMAND_LINE = {"landscape.cli", "landscape.cli_units", "landscape.cli_experiments",
                "landscape.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source (at the
    top or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                deps |= {c for c in [base, *(f"{base}.{a.name}" for a in node.names)]
                         if c in modules}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path, node, dep]
            if dep not in state:
                found = visit(dep, [*path, node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert {"landscape.sweep", "landscape.analyses", "landscape.cli"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_detector_finds_one():
    graph = import_graph()
    graph["landscape.results"] = graph["landscape.results"] | {"landscape.sweep"}
    assert _cycle(graph) is not None


def test_only_the_command_line_imports_it():
    for name, deps in import_graph().items():
        if name not in COMMAND_LINE:
            assert not deps & COMMAND_LINE, f"{name} imports {deps & COMMAND_LINE}"


def test_sweep_runs_an_analysis_without_the_command_line(tmp_path):
    code = (
        "import sys\n"
        "from landscape.sweep import expand_tasks, run_task\n"
        f"tasks = expand_tasks('slice', ['mlp'], ['xavier'], [0.0], [0], {str(tmp_path)!r},\n"
        "    args=['--space', 'loss', '--dims', '1', '--grid', '-1:1:3', '--samples', '16'])\n"
        "out = run_task(tasks[0])\n"
        "assert out['error'] is None, out\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('landscape.cli'))\n"
        "assert not loaded, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "slice").is_dir() and list((tmp_path / "slice").glob("*.nc"))
