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
