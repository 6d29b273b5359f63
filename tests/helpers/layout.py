"""The import rule of cnntrain/, checked: `python -m tests.helpers.layout` (and tests/test_layout.py).

Imports go one way, from the top layer down:

    cli, commands -> views -> assess, experiments, export, insight, train -> model, feed, loading
        -> data, spec, runs, figures -> errors, backend

A module may import its own package and any package of a lower layer, never one of a higher
layer; neither the module graph nor the package graph (packages of one layer may import each
other) has a cycle (imports inside functions count); no module is over
MAX_LINES lines; only views/ and figures/ import rich or matplotlib (computation never draws or
prints). Exit status 1 with one line per breach.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 400
LAYERS = [
    {"errors", "backend", "__init__", "__main__"},
    {"data", "spec", "runs", "figures"},
    {"model", "feed", "loading"},
    {"assess", "experiments", "export", "insight", "train"},
    {"views"},
    {"commands", "cli"},
]
DRAWING = ("rich", "matplotlib")
DRAWS = {"views", "figures"}
# __main__ runs the CLI: it sits above everything.
TOP_EXCEPTIONS = {"__main__": len(LAYERS)}


def package_root() -> Path:
    return Path(__file__).resolve().parents[2] / "cnntrain"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top_part(module: str) -> str:
    """'cnntrain.runs.folder' -> 'runs'; 'cnntrain' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> int:
    top = top_part(module)
    if top in TOP_EXCEPTIONS:
        return TOP_EXCEPTIONS[top]
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise KeyError(f"{module}: its folder '{top}' has no layer in tests/helpers/layout.py")


def imports_of(path: Path, module: str, modules: set[str]) -> set[str]:
    """The cnntrain modules that `path` imports (resolved to modules, not names inside them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for target in targets:
            # `from cnntrain.runs import atomic` names a module; `from cnntrain.runs.atomic import x` a name in one.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target.startswith("cnntrain") and target != module:
                found.add(target)
    # `from cnntrain.runs import atomic` adds both cnntrain.runs and cnntrain.runs.atomic: keep the deepest.
    return {t for t in found if not any(o.startswith(t + ".") for o in found)}


def external_imports(path: Path) -> set[str]:
    """The top-level names of the packages outside cnntrain that `path` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {"cnntrain"}


def graph(root: Path | None = None) -> tuple[dict[str, set[str]], dict[str, Path]]:
    root = root or package_root()
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths)
    return {m: imports_of(p, m, modules) for m, p in paths.items()}, paths


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search, each as the list of its modules."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph seen from the packages: 'assess' -> 'export' when a module of assess imports one of export."""
    out: dict[str, set[str]] = {}
    for module, targets in edges.items():
        out.setdefault(top_part(module), set()).update(top_part(t) for t in targets if top_part(t) != top_part(module))
    return out


def _witnesses(cycle: list[str], edges) -> str:
    """The module imports that make each step of a package cycle, so the breach says what to move."""
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        found = sorted(f"{m} imports {t}" for m, ts in edges.items() if top_part(m) == a
                       for t in ts if top_part(t) == b)
        steps.append(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    return " (" + "; ".join(steps) + ")"


def breaches(root: Path | None = None) -> list[str]:
    edges, paths = graph(root)
    out = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            same_package = top_part(module) == top_part(target)
            if not same_package and layer_of(target) > layer_of(module):
                out.append(f"{module} imports {target}: against the direction (layer {layer_of(module)} -> "
                           f"{layer_of(target)})")
    for module, path in sorted(paths.items()):
        if top_part(module) not in DRAWS:
            for name in sorted(external_imports(path) & set(DRAWING)):
                out.append(f"{module} imports {name}: only views/ and figures/ may")
    for cycle in cycles(edges):
        out.append("import cycle: " + " -> ".join(cycle))
    for cycle in cycles(package_edges(edges)):
        out.append("package cycle: " + " -> ".join(cycle) + _witnesses(cycle, edges))
    for module, path in sorted(paths.items()):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out.append(f"{module}: {lines} lines, over {MAX_LINES}")
    return out


def main() -> int:
    found = breaches()
    for line in found:
        print(line)
    if not found:
        edges, _ = graph()
        print(f"layout OK: {len(edges)} modules, {sum(map(len, edges.values()))} imports, no cycle of modules "
              "or packages, "
              f"none against the direction, none over {MAX_LINES} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
