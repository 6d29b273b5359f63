"""The benchmark scripts still import: every `from cnntrain... import name` in benchmarks/ resolves."""
import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def cnntrain_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnntrain"):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names if alias.name.startswith("cnntrain"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_every_cnntrain_import_of_a_benchmark_resolves(path):
    missing = []
    for module, names in cnntrain_imports(path):
        loaded = importlib.import_module(module)
        missing += [f"{module}.{name}" for name in names
                    if not hasattr(loaded, name) and importlib.util.find_spec(f"{module}.{name}") is None]
    assert missing == []
