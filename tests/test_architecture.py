"""The layering of docs/design.md ("Layers"), checked from the source.

Each wing imports only from the wings below it; no module imports another in a circle (not
even under ``TYPE_CHECKING``); stores are asked for optional capabilities with ``isinstance``
on the named protocols, never probed with ``getattr``; the promoter uses only public API.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk" / "modelshelf"
PROMOTER = ROOT / "promoter" / "modelshelf_promoter"

# Lower numbers are lower layers; a module may import its own wing or any lower one.
RANKS = {
    "_errors": 0,
    "_settings": 1,
    "layout": 1,
    "_refs": 1,
    "_card": 2,
    "_hashing": 1,
    "_stores": 3,
    "metrics": 3,
    "_versions": 4,
    "_loaders": 4,
    "_aliases": 5,
    "_trust": 5,
    "_registry": 6,
    "_serving": 7,
    "_views": 7,
    "serving": 8,
    "views": 8,
    "__init__": 8,
    "_cli": 9,
}
PUBLIC_MODULES = {
    "modelshelf",
    "modelshelf.layout",
    "modelshelf.metrics",
    "modelshelf.serving",
    "modelshelf.views",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SDK.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sdk_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SDK.rglob("*.py"))}


def _imports(path: Path, module: str) -> set[str]:
    """Every modelshelf module ``path`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("modelshelf"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("modelshelf"):
                continue
            submodules = {f"{target}.{a.name}" for a in node.names} & set(_sdk_modules())
            # "from . import layout as _layout" imports a module, not the package's names.
            found.update(submodules or {target})
    modules = _sdk_modules()
    return {name for name in found if name in modules and name != module}


def _wing(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_sdk_module_belongs_to_a_known_wing() -> None:
    unknown = sorted(m for m in _sdk_modules() if _wing(m) not in RANKS)
    assert not unknown, (
        f"modules outside the documented wings (add them to docs/design.md): {unknown}"
    )


def test_each_wing_imports_only_from_below() -> None:
    wrong = []
    for module, path in _sdk_modules().items():
        wing = _wing(module)
        for target in _imports(path, module):
            other = _wing(target)
            if other != wing and RANKS[other] >= RANKS[wing]:
                wrong.append(f"{module} imports {target} ({wing} -> {other})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_circle_among_sdk_modules() -> None:
    graph = {m: _imports(p, m) for m, p in _sdk_modules().items()}
    # A package's __init__ re-exports its submodules; importing a submodule runs the
    # package __init__ first, but that is not an edge back from the submodule.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_store_capabilities_are_never_probed_with_getattr() -> None:
    probe = re.compile(r"getattr\(\s*(self\.)?(registry\.)?store\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in list(SDK.rglob("*.py")) + list(PROMOTER.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not offenders, f"use isinstance(store, Supports...) instead of getattr: {offenders}"


@pytest.mark.parametrize("path", sorted(PROMOTER.rglob("*.py")), ids=lambda p: p.name)
def test_the_promoter_uses_only_public_modelshelf_modules(path: Path) -> None:
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            used.add(node.module)
        elif isinstance(node, ast.Import):
            used.update(a.name for a in node.names)
    private = sorted(m for m in used if m.startswith("modelshelf.") and m not in PUBLIC_MODULES)
    private += sorted(m for m in used if m == "modelshelf._cli")
    assert not private, f"{path.name} imports private SDK modules {private}: use public API"
