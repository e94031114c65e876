"""The package's import structure: one direction, no cycle, nothing below the
command line imports it or click, geometry below the analyses, plots below sweeps,
and no module over 600 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import landscape

PACKAGE = Path(landscape.__file__).parent
MAX_LINES = 600


def _is_command_line(name: str) -> bool:
    return name in ("landscape.cli", "landscape.__main__") or name.startswith("landscape.commands")


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
    assert {"landscape.sweep", "landscape.commands.registry", "landscape.cli"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_detector_finds_one():
    graph = import_graph()
    graph["landscape.results"] = graph["landscape.results"] | {"landscape.sweep"}
    assert _cycle(graph) is not None


def test_only_the_command_line_and_sweeps_import_it():
    # A sweep runs the analyses' commands by name (its tasks are their options);
    # everything else stays below the command line.
    for name, deps in import_graph().items():
        if _is_command_line(name) or name.startswith("landscape.sweep"):
            continue
        above = {d for d in deps if _is_command_line(d)}
        assert not above, f"{name} imports {above}"


def _imports_click(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click" \
                and not node.level:
            return True
    return False


def test_nothing_below_the_command_line_imports_click():
    below = [p for p in PACKAGE.rglob("*.py") if not _is_command_line(_module_name(p))]
    assert len(below) > 40
    offenders = [_module_name(p) for p in below if _imports_click(p)]
    assert not offenders, f"import click below the command line: {offenders}"
    assert _imports_click(PACKAGE / "commands" / "options.py")  # the check sees an import


ANALYSES = {"landscape.hessian", "landscape.maxact", "landscape.embedding", "landscape.sae",
            "landscape.sweep", "landscape.plot", "landscape.report"}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def _in(names: set[str], packages: set[str]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def test_geometry_never_imports_the_analyses():
    graph = import_graph()
    for geometry in ("landscape.directions", "landscape.convexity", "landscape.hull"):
        bad = _in(_reaches(graph, geometry), ANALYSES | {"landscape.commands"})
        assert not bad, f"{geometry} reaches {bad}"
    # slicing may take Hessian directions and shard its grid over Dask workers
    allowed = {"landscape.hessian", "landscape.sweep.shard", "landscape.sweep.cluster"}
    bad = _in(_reaches(graph, "landscape.slicing"), ANALYSES | {"landscape.commands"}) \
        - _in(_reaches(graph, "landscape.slicing"), allowed)
    assert not bad, f"landscape.slicing reaches {bad}"


def test_plots_never_import_sweeps():
    graph = import_graph()
    for name in graph:
        if name.startswith("landscape.plot"):
            assert not _in(graph[name], {"landscape.sweep"}), f"{name} imports a sweep module"


def test_no_module_is_over_the_line_limit():
    sizes = {_module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 40
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_each_analysis_is_one_file_of_the_registry():
    from landscape.commands.registry import ANALYSES as REGISTERED

    assert list(REGISTERED) == ["slice", "hessian", "maxact", "tsne", "sae"]
    for name, entry in REGISTERED.items():
        module = entry.run.__module__
        assert module == f"landscape.commands.{name}", (name, module)


def test_sweep_runs_an_analysis_without_the_command_line(tmp_path):
    code = (
        "import sys\n"
        "from landscape.sweep import expand_tasks, run_task\n"
        f"tasks = expand_tasks('slice', ['mlp'], ['xavier'], [0.0], [0], {str(tmp_path)!r},\n"
        "    args=['--space', 'loss', '--dims', '1', '--grid', '-1:1:3', '--samples', '16'])\n"
        "out = run_task(tasks[0])\n"
        "assert out['error'] is None, out\n"
        "loaded = sorted(m for m in sys.modules if m == 'landscape.cli')\n"
        "assert not loaded, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "slice").is_dir() and list((tmp_path / "slice").glob("*.nc"))


def test_every_public_name_resolves():
    # the lazy map of `landscape` names modules by path; a moved module must follow
    for name in landscape.__all__:
        assert getattr(landscape, name) is not None, name
