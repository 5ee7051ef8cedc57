import subprocess
import sys

import pytest

OURS = ("smplx", "pairof", "segment", "handavatar")
ALLOWED = {"smplx": set(), "pairof": {"smplx"}, "segment": {"smplx"}, "handavatar": {"smplx", "pairof", "segment"}}


@pytest.mark.parametrize("package", OURS)
def test_imports_follow_the_pipeline(package):
    """DESIGN.md: each package imports only packages upstream of it (checked in a fresh interpreter)."""
    code = (f"import sys, importlib, pkgutil; import {package} as p\n"
            f"[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, '{package}.') "
            f"if not m.name.endswith('__main__')]\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                 .stdout.split())
    assert loaded & set(OURS) - {package} <= ALLOWED[package]


def _imported_modules(path, known):
    """Our modules that a source file imports, at any depth of the file (function-level imports included)."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {name for name in names if name in known}
    return found


def test_no_module_imports_itself_back():
    """No import cycle among our modules (DESIGN.md: one idea per module, no cycles)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for package in OURS for p in (root / package).rglob("*.py")}
    graph = {module: _imported_modules(path, files) - {module} for module, path in files.items()}
    state = {}

    def visit(module, chain):
        if state.get(module) == "open":
            cycle = chain[chain.index(module):] + [module]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if state.get(module) is None:
            state[module] = "open"
            for other in sorted(graph[module]):
                visit(other, chain + [module])
            state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("package", (*OURS, "bench"))
def test_nothing_outside_the_tests_imports_them(package):
    """The packages and the benchmarks run from a checkout without tests/ on the path: none imports from it."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    tests = {".".join(p.relative_to(root).with_suffix("").parts) for p in (root / "tests").rglob("*.py")} | {"tests"}
    offenders = {str(p.relative_to(root)): sorted(_imported_modules(p, tests))
                 for p in (root / package).rglob("*.py") if _imported_modules(p, tests)}
    assert not offenders


def test_the_shared_utilities_import_nothing_above_them():
    """smplx/utils/ is the bottom of the stack: its modules import none of ours outside it (not the hand layer)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    ours = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            for package in OURS for p in (root / package).rglob("*.py")} | set(OURS)
    for path in (root / "smplx" / "utils").rglob("*.py"):
        outside = {m for m in _imported_modules(path, ours) if not m.startswith("smplx.utils")}
        assert not outside, (path.name, outside)
