"""The package layout as a contract: stages import one way (docs/DESIGN.md, "Layout").

Every module's imports are read from its source (ast, nothing is executed), so a new import that
runs against the direction fails here with the module and the import named.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "quant", "export", "hwsim")

# importer prefix -> project packages it may import (longest prefix wins)
ALLOWED: dict[str, tuple[str, ...]] = {
    "models": ("models",),
    "quant.data": ("models", "quant.data"),
    "quant.ir": ("quant.ir",),
    # a synthetic program's variant is found through the (torch-free) registry
    "quant.intops": ("models.variants", "quant.ir", "quant.intops"),
    "quant.qat": ("models", "quant.ir", "quant.intops", "quant.qat"),
    "quant.train": ("models", "quant.data", "quant.ir", "quant.intops", "quant.qat", "quant.train"),
    "quant": ("quant",),
    # export's library speaks the IR only; its pipeline glue and CLI lower trained models
    "export": ("models", "quant.ir", "export"),
    "export.pipeline": ("models", "quant.ir", "quant.qat", "quant.train", "export"),
    "export.cli": ("models", "quant.ir", "quant.qat", "quant.train", "export"),
    "export.qonnx": ("models", "quant.ir", "quant.qat", "export"),
    # hwsim is three rooms, imported downward only: app -> cost -> sim (see HWSIM_ROOMS below).
    # The simulator speaks the IR (and reads ONNX with export's checks); the package's `simulate` is its.
    "hwsim": ("hwsim.sim",),
    "hwsim.sim": ("models", "quant.ir", "export", "hwsim.sim"),
    "hwsim.cost": ("models", "quant.ir", "hwsim.sim", "hwsim.cost"),
    # the application drives every stage: training (the demo, the study), export, simulation and cost
    "hwsim.app": ("models", "quant", "export", "hwsim"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path) -> list[str]:
    """Absolute names of the project modules `path` imports (top level and inside functions)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n.split(".")[0] in PACKAGES]


def _rule(module: str) -> tuple[str, ...]:
    best = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)
    return ALLOWED[best]


def _allowed(target: str, rule: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in rule)


MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    module = _module_name(path)
    rule = _rule(module)
    against = [t for t in _project_imports(path) if not _allowed(t, rule)]
    assert not against, f"{module} imports {against}; it may import only {rule} (docs/DESIGN.md, Layout)"


def test_every_stage_package_says_what_it_holds():
    for pkg in ("quant", "quant/data", "quant/ir", "quant/intops", "quant/qat", "quant/train"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()[0]) > 20, f"{pkg}/__init__.py needs a docstring saying what it holds"


# ---------------------------------------------------------------- hwsim's three rooms

HWSIM_ROOMS = ("hwsim.sim", "hwsim.cost", "hwsim.app")  # lowest first: a room imports only itself and those before it
HWSIM_MODULES = [p for p in MODULES if p.relative_to(ROOT).parts[0] == "hwsim"]


def _room(module: str) -> int | None:
    """The index of `module`'s room in HWSIM_ROOMS; None for the `hwsim` package itself."""
    return next((i for i, r in enumerate(HWSIM_ROOMS) if module == r or module.startswith(r + ".")), None)


def test_every_hwsim_module_lives_in_a_room():
    loose = [m for m in map(_module_name, HWSIM_MODULES) if m != "hwsim" and _room(m) is None]
    assert not loose, f"{loose} lie outside hwsim's rooms {HWSIM_ROOMS}: move each into the one whose job it does"


@pytest.mark.parametrize("path", HWSIM_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hwsim_rooms_import_downward(path):
    module = _module_name(path)
    own = _room(module)
    own = 0 if own is None else own  # the package itself holds only the simulator's `simulate`
    upward = [t for t in _project_imports(path)
              if t.startswith("hwsim.") and (_room(t) or 0) > own]
    assert not upward, (f"{module} imports {upward} from a room above its own; imports run "
                        f"{' -> '.join(reversed(HWSIM_ROOMS))} only (docs/DESIGN.md, Layout)")


# ---------------------------------------------------------------- no import circles

NAMES = {_module_name(p) for p in MODULES}

# Imports made inside a function that would close a circle if made at module level, and why each is
# deferred there. Every other import, at module level or not, must leave the graph without circles.
DEFERRED: dict[tuple[str, str], str] = {
    ("hwsim.app.demo_report", "hwsim.app.demo"):
        "the report writes the demo's settings (config_dict); the demo calls the report to write its outputs",
    ("hwsim.app.ledger", "hwsim.app.demo"):
        "importing a finished demo folder reads its DemoConfig; the demo (through the study) writes records",
}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, (ast.Name, ast.Attribute)) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The project modules an import statement loads (for `from M import n`, M.n when it is a module)."""
    def known(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in NAMES), None)

    if isinstance(node, ast.Import):
        return [m for m in (known(a.name) for a in node.names) if m]
    base = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    module = ".".join(p for p in ((base if node.level else ""), node.module or "") if p)
    found = [known(f"{module}.{a.name}") if f"{module}.{a.name}" in NAMES else known(module) for a in node.names]
    return [m for m in found if m]


def _edges(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, imported at module level) for each import in `path`; imports under
    `if TYPE_CHECKING:` never run and are left out."""
    importer, out = _module_name(path), []
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend((t, not deferred) for t in _resolve(importer, is_package, child) if t != importer)
            visit(child, deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


GRAPH = {_module_name(p): _edges(p) for p in MODULES}


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_no_import_circles_at_module_level():
    edges = {m: {t for t, top in ts if top} for m, ts in GRAPH.items()}
    assert not _circles(edges), f"import circles at module level: {_circles(edges)}"


def test_no_import_circles_but_the_listed_deferred_imports():
    edges = {m: {t for t, _ in ts if (m, t) not in DEFERRED} for m, ts in GRAPH.items()}
    assert not _circles(edges), (f"import circles (counting imports inside functions): {_circles(edges)}; "
                                 "break them, or defer one import into a function and list it in DEFERRED with why")


def test_every_listed_deferred_import_is_deferred_and_needed():
    for (importer, target), why in DEFERRED.items():
        kinds = {top for t, top in GRAPH.get(importer, []) if t == target}
        assert kinds == {False}, f"{importer} -> {target} is listed in DEFERRED but is not (only) imported in a function"
        edges = {m: {t for t, _ in ts if (m, t) not in DEFERRED or (m, t) == (importer, target)}
                 for m, ts in GRAPH.items()}
        assert _circles(edges), f"{importer} -> {target} closes no circle ({why!r}): drop it from DEFERRED"
