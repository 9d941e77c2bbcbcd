"""The package's shape: no import cycle between modules, and a package root that shows the live path.

Static, over every import statement, function-level ones included: a deferred import avoids the crash
but not the tangle. `kernels/` is read as `stream_monitor.kernels`, as it installs.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The package root holds what a newcomer needs to find the live path and the CLI; everything else lives
# in a sub-package (docs/architecture.md, "Where things are").
ROOT_MODULES = {"__init__", "artifact", "bundled", "calibration", "cli", "config", "config_yaml", "errors",
                "preprocess", "service"}


def _module_files() -> dict[str, Path]:
    files = {}
    for base, prefix in ((ROOT / "stream_monitor", "stream_monitor"), (ROOT / "kernels", "stream_monitor.kernels")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([prefix, *parts])] = path
    return files


def _walk(tree: ast.Module):
    """Every statement, inside functions too (a deferred import still ties the two modules together),
    except the bodies of `if TYPE_CHECKING:` blocks, which never run."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in _walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package importing its own sub-modules (re-exports in __init__) is how packages work.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _graph() -> dict[str, set[str]]:
    files = _module_files()
    graph = {name: _imports(name, path, set(files)) for name, path in files.items()}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first. A module's own ancestors are left out: they
    # are already being initialised when it runs (a sub-module importing its package is no cycle).
    for name in list(graph):
        own = set(_with_parents(name))
        graph[name] = {parent for dep in graph[name] for parent in _with_parents(dep)
                       if parent in graph and parent not in own}
    return graph


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_cycle_check_sees_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_root_holds_only_the_live_core_and_the_cli():
    on_disk = {p.stem for p in (ROOT / "stream_monitor").glob("*.py")}
    assert on_disk == ROOT_MODULES, (f"new at the root: {sorted(on_disk - ROOT_MODULES)} (put it in a sub-package), "
                                     f"gone: {sorted(ROOT_MODULES - on_disk)}")


def test_capture_does_not_import_the_offline_study_code():
    graph, seen, todo = _graph(), set(), ["stream_monitor.capture.process"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    offline = sorted(m for m in seen if m.startswith(("stream_monitor.data.split", "stream_monitor.evaluation",
                                                       "stream_monitor.training", "stream_monitor.baselines")))
    assert not offline, f"a capture process imports offline modules: {offline}"


def test_every_module_imports():
    """A relative import left pointing at a module's old place fails here, not in a spawned process."""
    import importlib
    import pkgutil

    import stream_monitor

    failed = {}
    for info in pkgutil.walk_packages(stream_monitor.__path__, "stream_monitor."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - every failure is reported by name
            failed[info.name] = repr(exc)
    assert not failed, failed
